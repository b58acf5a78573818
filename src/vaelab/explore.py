"""The article's "Using the model" figures, from a trained run.

Each `figure_*` function computes what it shows with `vaelab.latent` and draws
it with `vaelab.plots`; all of them share one `Codes`: a fixed, seeded subset of
images, binarized as in training and encoded once, batched. A figure's default
place is RUN/figures/NAME.png, written with `root=run.path` so that no link
planted inside the run is followed. Classes are named as the run recorded them
(`classes_of`), and images have the run's shape (`image_shape`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab import latent, plots
from vaelab.catalog import Classes, classes_of_run
from vaelab.checkpoint import Run
from vaelab.data import DataMismatchWarning, binarize, data_mismatches, load_split
from vaelab.device import make_generator
from vaelab.errors import VaelabError
from vaelab.files import display
from vaelab.prepare import trained_on

FIGURES = "figures"  # folder inside a run where figures go by default
MNIST_SHAPE = (28, 28)  # runs whose model does not say its image shape are MNIST's


def image_shape(run: Run) -> tuple[int, int]:
    """(H, W) of the run's images: the model's own `image_shape` where it has one, else MNIST's."""
    shape = getattr(run.model, "image_shape", None)
    return (int(shape[0]), int(shape[1])) if shape is not None else MNIST_SHAPE


def classes_of(run: Run) -> Classes:
    """What the run's labels mean: digits, or named classes such as Fashion-MNIST's."""
    return classes_of_run(run.data)


def _decode(run: Run, z: torch.Tensor, style: str):
    return latent.decode_images(run.model, z, style, image_shape(run))


@dataclass(frozen=True)
class Codes:
    """A subset of a split, as the model sees it, with its posterior."""

    x: torch.Tensor  # (N, D) binary images
    labels: torch.Tensor  # (N,)
    mu: torch.Tensor  # (N, L) posterior means
    var: torch.Tensor  # (N, L) posterior variances
    stats: latent.ClassStats  # per-class means and variances of the posterior
    mismatches: tuple[str, ...] = ()  # files read that differ from the ones the run recorded, one line each


def encode_subset(run: Run, *, n: int = 10000, seed: int = 0, split: str = "train",
                  data_dir: str | None = None) -> Codes:
    """Encode a seeded random subset of `n` images of `split` (the article: 10,000 training images); of the
    training split, only the images the run trained on, not those it held out for validation.

    The images come from the run's own data unless `data_dir` points elsewhere (the files moved).
    Files that differ from the ones the run was trained with raise a DataMismatchWarning naming them.
    """
    if n < 1:
        raise VaelabError(f"--n-stats must be at least 1, got {n}")
    data = load_split(split, data_dir if data_dir is not None else run.config.data_dir,
                      dataset=run.config.dataset, class_names=run.config.class_names)
    mismatches = tuple(data_mismatches(run.data.get("sha256", {}), data.files))
    if mismatches:
        warnings.warn(f"the {split} files differ from the ones {display(run.path)} was trained with "
                      f"({'; '.join(mismatches)}); the figures show other data than the model learned from",
                      DataMismatchWarning, stacklevel=2)
    generator = make_generator(torch.device("cpu"), seed)
    kept = trained_on(run, len(data.labels)) if split == "train" else None
    if kept is None:
        index = torch.randperm(len(data.labels), generator=generator)[: min(n, len(data.labels))]
    else:  # the held-out images are no training images of this run
        index = kept[torch.randperm(len(kept), generator=generator)[: min(n, len(kept))]]
    x = binarize(data.images[index], run.config.binarization, generator)
    labels = data.labels[index]
    mu, var = latent.encode_all(run.model, x)
    return Codes(x=x, labels=labels, mu=mu, var=var, stats=latent.class_statistics(mu, var, labels),
                 mismatches=mismatches)


def default_path(run: Run, name: str) -> Path:
    """RUN/figures/NAME.png; write it with `root=run.path`."""
    return run.path / FIGURES / f"{name}.png"


def figure_reconstructions(run: Run, codes: Codes, path: Path, *, n: int = 16, style: str = "mean",
                           root: Path | None = None) -> Path:
    """Originals above their reconstructions (decoded from the posterior means)."""
    if n < 1:
        raise VaelabError(f"-n must be at least 1, got {n}")
    n = min(n, len(codes.x))
    originals = codes.x[:n].reshape(n, *image_shape(run)).cpu().numpy()
    recon = _decode(run, codes.mu[:n], style)
    return plots.plot_reconstructions(originals, recon, codes.labels[:n].tolist(), path, classes=classes_of(run),
                                      root=root)


def figure_generate(run: Run, codes: Codes, path: Path, *, label: int | None, n: int = 20, seed: int = 0,
                    style: str = "mean", root: Path | None = None) -> Path:
    """New images of one class (the article's recipe), or from the prior when `label` is None."""
    if n < 1:
        raise VaelabError(f"-n must be at least 1, got {n}")
    generator = make_generator(torch.device("cpu"), seed)
    classes = classes_of(run)
    if label is None:
        z = latent.sample_prior(n, run.model.latent_size, generator)
        title = f"{n} samples from the prior N(0, I)"
    else:
        z = latent.sample_class(codes.stats, label, n, generator, classes=classes)
        what = f"{label}s" if classes.digits else f"{classes.name(label)} images"
        title = f"{n} new {what}: class mean + noise with the class's mean posterior variance"
    return plots.plot_samples(_decode(run, z, style), path, title, root=root)


def figure_generate_all(run: Run, codes: Codes, path: Path, *, n: int = 10, seed: int = 0,
                        style: str = "mean", root: Path | None = None) -> Path:
    """One row of `n` new images per class, each drawn by the article's recipe."""
    if n < 1:
        raise VaelabError(f"-n must be at least 1, got {n}")
    generator = make_generator(torch.device("cpu"), seed)
    z = torch.stack([latent.sample_class(codes.stats, int(c), n, generator) for c in codes.stats.classes])
    images = _decode(run, z, style)  # (C, n, H, W)
    return plots.plot_class_samples(images, codes.stats.classes.tolist(), path, classes=classes_of(run), root=root)


def figure_mix(run: Run, codes: Codes, path: Path, *, style: str = "mean", root: Path | None = None) -> Path:
    """The article's matrix of averaged class means, 10 x 10 when every class is present."""
    images = _decode(run, latent.mix_matrix(codes.stats.means), style)
    return plots.plot_mix(images, codes.stats.classes.tolist(), path, classes=classes_of(run), root=root)


def figure_interpolate(run: Run, codes: Codes, path: Path, *, start: int, end: int, steps: int = 10,
                       method: str = "lerp", style: str = "mean", root: Path | None = None) -> Path:
    """The strip between two classes' mean codes, both included."""
    classes = classes_of(run)
    a = codes.stats.means[codes.stats.index(start, classes)]
    b = codes.stats.means[codes.stats.index(end, classes)]
    z = latent.interpolate(a, b, steps, method)
    return plots.plot_interpolation(_decode(run, z, style), path, start=start, end=end, method=method,
                                    classes=classes, root=root)


def figure_embed(run: Run, codes: Codes, path: Path, *, method: str = "tsne", seed: int = 0,
                 root: Path | None = None) -> Path:
    """2-D map of the codes alone (labels only colour the points)."""
    points = latent.embed(codes.mu.cpu().numpy(), method, seed=seed % 2**32)  # sklearn and umap take 32 bits
    return plots.plot_embedding(points, codes.labels.cpu().numpy(), path, method=method, classes=classes_of(run),
                                root=root)


def figure_kl(run: Run, codes: Codes, path: Path, *, root: Path | None = None) -> Path:
    """KL per latent dimension and the active units, over the subset's posterior."""
    kl = latent.kl_per_dimension(codes.mu, codes.var).cpu().numpy()
    active = latent.active_units(codes.mu).cpu().numpy()
    return plots.plot_kl_per_dimension(kl, active, path, top_layer=getattr(run.model, "hierarchical", False),
                                       root=root)


def figure_curves(run: Run, path: Path, *, root: Path | None = None) -> Path:
    """Training curves from the run's per-epoch metrics."""
    if not run.metrics:
        raise VaelabError(f"{display(run.path)} has no completed epoch yet; train it before plotting its curves")
    return plots.plot_curves(run.metrics, path, root=root)

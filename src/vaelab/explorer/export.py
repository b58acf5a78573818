"""What the explorer page knows about a run: one JSON object, built here, read by static/explorer.js.

The page runs the run's encoder and decoder in plain JavaScript, so the object
holds the weights themselves, a seeded subset of the test set as the model sees
it, the subset's codes and their statistics. Arrays of numbers travel as base64
of their bytes; everything else is plain strict JSON (no NaN or Infinity).

The contract, `format` "vaelab-explorer/1" (the script relies on every key)::

    format: "vaelab-explorer/1"
    title: str                       the run folder's name
    run: {path: str,                 the run folder, absolute
          epoch: int, step: int, weights_sha256: str,
          config: {...},             TrainConfig.to_dict()
          scores: {elbo, elbo_stderr, log_likelihood, log_likelihood_stderr (or null), iw_k,
                    active_units, n_images, data_matches_run} or null}
                                     from eval.json when it scores exactly these weights, else null
    model: {name: "mlp" | "conv",
            args: {...},             the constructor's arguments: vaelab.models.named_args(model) minus "name"
            tensors: {KEY: {shape: [...], data: B64F32}}}   every entry of the model's state_dict
    image_shape: [H, W]
    classes: {names: [...], word: "digit" | "class"}
    test: {n: N,                     min(n, test images): a subset drawn by `seed`
           labels: [N ints],
           index: [N ints],          each image's place in the test files, from 0 (eval.json's per-image order)
           log_likelihood: [N] or null,  eval.json's IW estimate of each, nats, when it scored these weights
                                     on these very pixels (run.scores.iw_k samples), else null
           images: B64BITS,          numpy.packbits of the N x H x W binary pixels, MSB first, row after row
           mu: B64F32}               N x L posterior means
    maps: {pca: B64F32, ...}         N x 2 coordinates of the codes; "tsne" or "umap" only when asked for
    pca: {mean: [L], components: [[L] x P], std: [P]}
                                     P = min(L, 8) principal directions of the N codes, largest first, each
                                     signed so its largest entry is positive; std: the codes' along each
    latent: {kl: [L],                mean KL(q(z_j|x) || N(0, 1)) over the N images, nats (mlp2: z's, h1 at its mean)
             order: [L ints],        dimensions by KL, largest first
             active: [L bools],      Var[mu_j] > 0.01 (Burda et al. 2015)
             std: [L]}               std of mu_j over the N images
    class_means: {labels: [C ints],  the classes present, ascending
                  means: [[L] x C]}  mean posterior mean of each

B64F32 is base64 of float32 values, little-endian, in C order; B64BITS is
base64 of the packed bits. maps.pca is (mu - pca.mean) @ pca.components[:2].T
(a second column of zeros for a one-dimensional latent). The test images are
binarized exactly as `vaelab eval --seed SEED` scores them, and std's are over
N - 1 (so active_j is std_j > 0.1).
"""

from __future__ import annotations

import base64
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab import latent
from vaelab.catalog import classes_of_run
from vaelab.checkpoint import Run
from vaelab.data import DataMismatchWarning, binarize, data_mismatches, load_split
from vaelab.device import make_generator
from vaelab.errors import VaelabError
from vaelab.evalfile import read_eval
from vaelab.explore import image_shape
from vaelab.files import display
from vaelab.models import named_args
from vaelab.prepare import test_pixels_generator, test_pixels_words

FORMAT = "vaelab-explorer/1"
MIN_IMAGES, MAX_IMAGES = 10, 10_000  # test images embedded: enough for a map, few enough for a light page
MAX_COMPONENTS = 8  # principal directions the page offers as sliders
SCORES = ("elbo", "elbo_stderr", "log_likelihood", "log_likelihood_stderr", "iw_k", "active_units", "n_images",
          "data_matches_run")


def payload(run: Run, *, n: int = 1000, seed: int = 0, data_dir: str | None = None,
            embed: tuple[str, ...] | list[str] = ("pca",)) -> dict[str, Any]:
    """The explorer's JSON object for `run` (the contract is in this module's docstring).

    `n` test images are drawn by `seed`; `embed` names the 2-D maps to add ("pca" is always there).
    The run is never scored here: scores come from eval.json when it holds these weights.
    """
    if not MIN_IMAGES <= n <= MAX_IMAGES:
        raise VaelabError(f"-n must be from {MIN_IMAGES} to {MAX_IMAGES:,} test images, got {n}")
    unknown = [m for m in embed if m not in latent.EMBED_METHODS]
    if unknown:
        raise VaelabError(f"unknown map {unknown[0]!r}; use one of {', '.join(latent.EMBED_METHODS)}")
    for method in embed:
        latent.require_embedding(method)
    model = run.model.cpu()
    tensors = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    if not all(bool(t.isfinite().all()) for t in tensors.values() if t.is_floating_point()):
        raise VaelabError(f"{display(run.path)} holds non-finite weights (it diverged); train it again "
                          "with a lower --lr")
    x, labels, index, files = _test_subset(run, n=n, seed=seed, data_dir=data_dir)  # (N, D), (N,), (N,)
    mu, var = latent.encode_all(model, x)  # (N, L) each
    if not (bool(mu.isfinite().all()) and bool(var.isfinite().all())):
        raise VaelabError(f"{display(run.path)} encodes some test images to non-finite codes; its weights "
                          "are not usable (train it again with a lower --lr)")
    mu64 = mu.double().numpy()
    pca = principal_components(mu64, min(mu64.shape[1], MAX_COMPONENTS))
    maps = {"pca": _f32(project(mu64, pca))}
    for method in dict.fromkeys(embed):  # in order, once each
        if method != "pca":
            maps[method] = _f32(latent.embed(mu.numpy(), method, seed=seed % 2**32))  # sklearn takes 32 bits
    stats = latent.class_statistics(mu, var, labels)
    kl = latent.kl_per_dimension(mu.double(), var.double()).tolist()
    args = named_args(model)
    name = args.pop("name")
    return {
        "format": FORMAT,
        "title": display(_absolute(run.path).name),
        "run": {
            "path": display(_absolute(run.path)),
            "epoch": run.epoch,
            "step": run.step,
            "weights_sha256": run.weights_sha256,
            "config": _printable(run.config.to_dict()),
            "scores": _scores(run),
        },
        "model": {
            "name": name,
            "args": args,
            "tensors": {key: {"shape": list(t.shape), "data": _f32(t.numpy())} for key, t in tensors.items()},
        },
        "image_shape": list(image_shape(run)),
        "classes": _printable(classes_of_run(run.data).to_dict()),
        "test": {
            "n": len(labels),
            "labels": labels.tolist(),
            "index": index.tolist(),
            "log_likelihood": _image_scores(run, index.tolist(), files, seed),
            "images": _b64(np.packbits(x.numpy().astype(np.uint8).reshape(-1))),  # MSB first
            "mu": _f32(mu.numpy()),
        },
        "maps": maps,
        "pca": {key: value.tolist() for key, value in pca.items()},
        "latent": {
            "kl": kl,
            "order": sorted(range(len(kl)), key=lambda j: -kl[j]),  # stable: ties keep their index order
            "active": latent.active_units(mu).tolist(),
            "std": _std(mu64, 0).tolist(),
        },
        "class_means": {"labels": stats.classes.tolist(), "means": stats.means.double().tolist()},
    }


def principal_components(codes: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """The mean (L,), the `p` principal directions (p, L), largest variance first, and the std along each (p,).

    From the eigenvectors of the covariance, so there are always `p` of them, even with fewer codes
    than dimensions; each is signed so that its largest entry is positive, which makes them reproducible.
    """
    mean = codes.mean(0)
    centred = codes - mean
    cov = centred.T @ centred / max(len(codes) - 1, 1)  # (L, L)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    components = vectors[:, ::-1].T[:p].copy()  # (p, L)
    largest = np.abs(components).argmax(1)
    components *= np.where(components[np.arange(p), largest] < 0, -1.0, 1.0)[:, None]
    return {"mean": mean, "components": components, "std": _std(centred @ components.T, 0)}


def project(codes: np.ndarray, pca: dict[str, np.ndarray]) -> np.ndarray:
    """The codes' coordinates on the first two principal directions. (N, L) -> (N, 2)"""
    points = (codes - pca["mean"]) @ pca["components"][:2].T
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))  # a 1-D latent: a line on the map


def _test_subset(run: Run, *, n: int, seed: int,
                 data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, str]]:
    """min(n, M) test images drawn by `seed`, binarized as `vaelab eval --seed SEED` sees them, their labels,
    their places in the test files, and the files' SHA-256."""
    split = load_split("test", data_dir if data_dir is not None else run.config.data_dir,
                       dataset=run.config.dataset, class_names=run.config.class_names)
    mismatches = data_mismatches(run.data.get("sha256", {}), split.files)
    if mismatches:
        warnings.warn(f"the test files differ from the ones {display(run.path)} was trained with "
                      f"({'; '.join(mismatches)}); the explorer shows other data than the model learned from",
                      DataMismatchWarning, stacklevel=3)
    cpu = torch.device("cpu")
    x = binarize(split.images, run.config.binarization, test_pixels_generator(run, cpu, seed))  # all, as eval
    index = torch.randperm(len(split.labels), generator=make_generator(cpu, seed))[:n]
    return x[index], split.labels[index].long(), index, split.files


def _image_scores(run: Run, index: list[int], files: dict[str, str], seed: int) -> list[float] | None:
    """eval.json's estimate for each image shown, when it scored these weights on these files and pixels (a
    dynamic draw: the one drawn here); else None."""
    scores = read_eval(run)
    if scores is None or scores.log_likelihood_per_image is None or scores.data_sha256 != files:
        return None
    if run.config.binarization == "dynamic" and scores.test_pixels != test_pixels_words(run, torch.device("cpu"),
                                                                                         seed):
        return None  # other draws of the pixels (or a file from before eval.json said which)
    per_image = scores.log_likelihood_per_image
    return [per_image[i] for i in index] if max(index, default=-1) < len(per_image) else None


def _scores(run: Run) -> dict[str, Any] | None:
    scores = read_eval(run)
    return None if scores is None else {key: getattr(scores, key) for key in SCORES}


def _std(values: np.ndarray, axis: int) -> np.ndarray:
    """Standard deviation over N - 1; zero for a single value."""
    return values.std(axis, ddof=1) if values.shape[axis] > 1 else np.zeros(values.shape[1 - axis])


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # no link resolved: the folder as the user named it


def _printable(value: Any) -> Any:
    """Strings as they can be shown: names that are not UTF-8 get the replacement character (see `display`)."""
    if isinstance(value, str):
        return display(value)
    if isinstance(value, dict):
        return {display(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def _f32(values: np.ndarray) -> str:
    return _b64(np.ascontiguousarray(values, dtype="<f4"))


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(values.tobytes()).decode("ascii")

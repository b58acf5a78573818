"""Figures: arrays and a path in, a PNG (or PDF or SVG) out. Nothing here runs a model.

Figures are drawn with matplotlib's object API (no pyplot, so no global state
and no display needed). Images are shown white on black, as MNIST is. Plots of
classes take the labels as integers and a `Classes` that names them: "3" and
"digit" for MNIST, "Trouser" and "class" for Fashion-MNIST.
Every figure is rendered in memory and written with `vaelab.files.atomic_write`:
readers never see half a file, a link planted at the path is replaced rather
than written through, and with `root=RUN` no folder below the run may be a link.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.catalog import DIGITS, Classes
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, display

DPI = 110
GAP = 2  # pixels between images in a mosaic
GAP_VALUE = 0.35  # grey of the gaps, so black images' edges stay visible
PALETTE = "tab10"
FORMATS = ("png", "pdf", "svg")  # what a figure's name may end with


def _figure(width: float, height: float, title: str = "", fontsize: float = 12, margin: float = 0.0):
    """A figure at least as wide as its title (DejaVu Sans averages ~0.55 em a character), plus `margin`
    inches for labels beside the axes (the title is centred over the axes, not the figure)."""
    from matplotlib.figure import Figure

    width = max(width, len(title) * fontsize * 0.56 / 72 + 0.5) + margin
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def figure_format(path: str | Path) -> str:
    """The file format a figure's name asks for ('png', 'pdf' or 'svg'), or a VaelabError naming them."""
    suffix = Path(path).suffix.lower()
    if suffix[1:] not in FORMATS:
        supported = ", ".join(f".{f}" for f in FORMATS)
        raise VaelabError(f"cannot write a figure to {display(path)}: the supported formats are {supported}; "
                          "give a name ending in one of them")
    return suffix[1:]


def figure_path(out: str, name: str) -> Path:
    """Where `--out OUT` puts the figure of the command `name`.

    A folder (an existing one, or any OUT ending in a slash) gets NAME.png; a name
    without a suffix gets .png; any suffix other than .png, .pdf or .svg is refused.
    """
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        return Path(out) / f"{name}.png"
    path = Path(out)
    if not path.suffix:
        return path.with_name(f"{path.name}.png")
    figure_format(path)
    return path


def _save(fig, path: str | Path, root: str | Path | None) -> Path:
    """Render `fig` in memory, in the format its name asks for, and write it atomically."""
    path = Path(path)
    buffer = BytesIO()
    fig.savefig(buffer, format=figure_format(path), dpi=DPI, facecolor="white")
    if root is None:  # a path the user chose: make its folders as asked
        path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, buffer.getvalue(), root=root)


def mosaic(images: np.ndarray, gap: int = GAP, fill: float = GAP_VALUE) -> np.ndarray:
    """Tile images (R, C, H, W) into one (R*(H+gap)-gap, C*(W+gap)-gap) array."""
    rows, cols, h, w = images.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), fill, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = images[r, c]
    return out


def _show(ax, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _centres(n: int, size: int, gap: int = GAP) -> np.ndarray:
    """Mosaic coordinates of the middles of `n` tiles of `size` pixels."""
    return np.arange(n) * (size + gap) + (size - 1) / 2


def _items(classes: Classes) -> str:
    """What the images are called: 'digits' for MNIST, else 'images'."""
    return "digits" if classes.digits else "images"


def _long(names: Sequence[str]) -> bool:
    """Names too wide to sit side by side under tiles ~0.6 inch apart."""
    return max((len(n) for n in names), default=0) > 3


def _label_width(names: Sequence[str], fontsize: float = 11) -> float:
    """Inches that names wider than a digit take beside the axes."""
    return max((len(n) - 1 for n in names), default=0) * fontsize * 0.6 / 72


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, labels: Sequence[int],
                         path: str | Path, *, per_row: int = 8, classes: Classes = DIGITS,
                         root: str | Path | None = None) -> Path:
    """Pairs (original above its reconstruction), labelled with their class. (n, H, W) each."""
    n = len(originals)
    rows = -(-n // per_row)
    h, w = originals.shape[1:]
    title = f"Test {_items(classes)} (top) and their reconstructions (bottom)"
    fig = _figure(1.2 * min(n, per_row) + 0.6, 2.5 * rows + 0.5, title)
    axes = np.atleast_1d(fig.subplots(rows, 1, squeeze=False)[:, 0])
    for r, ax in enumerate(axes):
        chunk = slice(r * per_row, min(n, (r + 1) * per_row))
        top, bottom = originals[chunk], reconstructions[chunk]
        pad = per_row - len(top) if rows > 1 else 0
        blank = np.zeros((pad, *top.shape[1:]), dtype=np.float32)
        pairs = np.stack([np.concatenate([top, blank]), np.concatenate([bottom, blank])])  # (2, k, H, W)
        _show(ax, mosaic(pairs))
        names = [classes.name(int(v)) for v in labels[chunk]]
        ax.set_xticks(_centres(pairs.shape[1], w)[: len(top)], names)
        ax.set_yticks(_centres(2, h), ["original", "recon."])
        ax.tick_params(length=0, labelsize=10 if not _long(names) else 8)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path, root)


def plot_samples(images: np.ndarray, path: str | Path, title: str, *, per_row: int = 10,
                 root: str | Path | None = None) -> Path:
    """A grid of generated images. (n, H, W)"""
    n = len(images)
    cols = min(n, per_row)
    rows = -(-n // cols)
    padded = np.concatenate([images, np.zeros((rows * cols - n, *images.shape[1:]), dtype=np.float32)])
    fig = _figure(0.9 * cols + 0.4, 0.9 * rows + 0.7, title)
    ax = fig.subplots()
    _show(ax, mosaic(padded.reshape(rows, cols, *images.shape[1:])))
    ax.set_title(title, fontsize=12)
    return _save(fig, path, root)


def plot_class_samples(images: np.ndarray, labels: Sequence[int], path: str | Path, *,
                       classes: Classes = DIGITS, root: str | Path | None = None) -> Path:
    """Rows of generated images, one row per class. (C, n, H, W)"""
    c, n, h = images.shape[:3]
    title = f"New {_items(classes)}: class mean + noise with the class's mean posterior variance"
    names = [classes.name(int(k)) for k in labels]
    fig = _figure(0.62 * n + 1.0, 0.62 * c + 0.9, title, 11, margin=_label_width(names))
    ax = fig.subplots()
    _show(ax, mosaic(images))
    ax.set_yticks(_centres(c, h), names)
    ax.tick_params(length=0, labelsize=11)
    ax.set_ylabel(classes.word, fontsize=11)
    ax.set_title(title, fontsize=11)
    return _save(fig, path, root)


def plot_mix(images: np.ndarray, labels: Sequence[int], path: str | Path, *, classes: Classes = DIGITS,
             root: str | Path | None = None) -> Path:
    """The mixing matrix: cell (i, j) decodes the average of classes i and j. (C, C, H, W)"""
    c = len(labels)
    h, w = images.shape[2:]
    title = f"Mixing {'digits' if classes.digits else 'classes'}: decoding the average of two class means"
    names = [classes.name(int(k)) for k in labels]
    slanted = _long(names)  # long names above the columns go up at an angle, so they do not overlap
    extra = _label_width(names, 10)
    fig = _figure(0.62 * c + 1.4, 0.62 * c + 1.3 + extra, title, margin=extra)
    ax = fig.subplots()
    _show(ax, mosaic(images))
    ax.set_xticks(_centres(c, w), names)
    ax.set_yticks(_centres(c, h), names)
    ax.tick_params(length=0, labelsize=11 if not slanted else 10, labeltop=True, labelbottom=False)
    if slanted:
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set(ha="left", va="bottom", rotation_mode="anchor")
    ax.set_xlabel(classes.word, fontsize=11)
    ax.xaxis.set_label_position("top")
    ax.set_ylabel(classes.word, fontsize=11)
    ax.set_title(title, fontsize=12, pad=8 if slanted else 28)
    return _save(fig, path, root)


def plot_interpolation(images: np.ndarray, path: str | Path, *, start: int, end: int, method: str,
                       classes: Classes = DIGITS, root: str | Path | None = None) -> Path:
    """The strip of decoded codes from class `start` to class `end`, both ends included. (steps, H, W)"""
    steps, _, w = images.shape
    first, last = classes.name(start), classes.name(end)
    title = f"From {first} to {last} ({method}, {steps} steps)"
    fig = _figure(0.85 * steps + 0.6, 1.75, title, 11)
    ax = fig.subplots()
    _show(ax, mosaic(images[None]))
    ticks = [f"{t:.2g}" for t in np.linspace(0, 1, steps)]
    ticks[0], ticks[-1] = first, last
    ax.set_xticks(_centres(steps, w), ticks)
    ax.tick_params(length=0, labelsize=9)
    ax.set_title(title, fontsize=11)
    return _save(fig, path, root)


def class_colour(label: int) -> tuple[float, float, float]:
    """A class's colour, as the explorer page paints it: tab10's for the first ten, then hues 137.5° apart
    (hsl(137.5·k, 60%, 45%)), so that no two classes of a larger dataset share one."""
    import colorsys

    from matplotlib import colormaps

    if label < 10:
        return tuple(colormaps[PALETTE](label)[:3])
    return colorsys.hls_to_rgb((label * 137.5) % 360 / 360, 0.45, 0.60)


def plot_embedding(points: np.ndarray, labels: np.ndarray, path: str | Path, *, method: str,
                   classes: Classes = DIGITS, root: str | Path | None = None) -> Path:
    """2-D map of latent codes, coloured by class, with a legend and the class names at their centres."""
    fig = _figure(8.5, 7.0)
    ax = fig.subplots()
    present = np.unique(labels)
    order = np.random.default_rng(0).permutation(len(points))  # no class painted on top of the rest
    ax.scatter(points[order, 0], points[order, 1], c=[class_colour(int(k)) for k in labels[order]],
               s=4, alpha=0.55, linewidths=0, rasterized=True)
    long = _long([classes.name(int(k)) for k in present])
    for k in present:  # a short name in a circle; a long one in a rounded box, smaller
        centre = np.median(points[labels == k], axis=0)
        ax.text(*centre, classes.name(int(k)), fontsize=9 if long else 15, weight="bold", ha="center",
                va="center", color="black",
                bbox={"boxstyle": "round,pad=0.25" if long else "circle,pad=0.2", "fc": "white",
                      "ec": class_colour(int(k)), "alpha": 0.85})
    handles = [ax.scatter([], [], color=class_colour(int(k)), s=40, label=classes.name(int(k))) for k in present]
    ax.legend(handles=handles, title=classes.word, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    name = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}.get(method, method)
    ax.set_title(f"{name} of {len(points):,} latent codes (posterior means), coloured by {classes.word}",
                 fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path, root)


def plot_kl_per_dimension(kl: np.ndarray, active: np.ndarray, path: str | Path, *, top_layer: bool = False,
                          root: str | Path | None = None) -> Path:
    """Bars of KL(q(z_j|x) || p(z_j)) per latent dimension, sorted, active units highlighted; `top_layer`:
    z of a model with two stochastic layers, given h1 at its posterior mean (not the ELBO's KL of both)."""
    order = np.argsort(-kl)
    n_active = int(active.sum())
    what = "KL per dimension of z, the top layer (h1 at its posterior mean)" if top_layer else \
        "KL per latent dimension"
    title = (f"{what}: {n_active} of {len(kl)} units active "
             f"(blue: Var[mu] > 0.01), {'summed' if top_layer else 'total'} {kl.sum():.1f} nats")
    fig = _figure(max(6.0, 0.16 * len(kl) + 2.0), 3.6, title, 11)
    ax = fig.subplots()
    colours = np.where(active[order], "#1f77b4", "#c7c7c7")
    ax.bar(np.arange(len(kl)), kl[order], color=colours, width=0.8)
    ax.set_xticks(np.arange(len(kl)), [str(int(j)) for j in order], fontsize=6, rotation=90)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL per image (nats)")
    ax.set_xlim(-0.7, len(kl) - 0.3)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, root)


MARKED_EPOCHS = 50  # up to this many epochs a curve marks each one (the article's 10); past it, lines alone
LOG_EPOCHS = 100  # from this many epochs on, a log axis: the first passes and the last hundreds both show
MAX_LR_STEPS = 12  # learning-rate changes drawn as lines; a rate that changes every epoch gets none


def lr_steps(metrics: Sequence[dict[str, Any]]) -> list[int]:
    """The epochs after which the learning rate changed (IWAE's schedule: 1, 4, 13, 40, ...), from the `lr`
    each epoch's metrics record; none where it is not recorded, or where it changes more than
    MAX_LR_STEPS times (a decay every epoch would hide the curves behind the lines)."""
    steps = [a["epoch"] for a, b in zip(metrics[:-1], metrics[1:], strict=True)
             if a.get("lr") is not None and b.get("lr") is not None and a["lr"] != b["lr"]]
    return steps if len(steps) <= MAX_LR_STEPS else []


def curve_layout(metrics: Sequence[dict[str, Any]]) -> tuple[bool, bool, list[int]]:
    """How `plot_curves` draws these metrics: (each epoch marked, a log axis of epochs, the learning rate's
    steps)."""
    return len(metrics) <= MARKED_EPOCHS, max(m["epoch"] for m in metrics) >= LOG_EPOCHS, lr_steps(metrics)


def plot_curves(metrics: Sequence[dict[str, Any]], path: str | Path, *, root: str | Path | None = None) -> Path:
    """ELBO, reconstruction and KL per epoch, train, test and validation (when held out), from a run's metrics.

    Up to MARKED_EPOCHS epochs (the article's run) each epoch is marked; a long run (IWAE's 3,280 passes) is
    drawn in lines, on a log axis from LOG_EPOCHS epochs on, with its learning rate's steps as faint lines."""
    epochs = np.array([m["epoch"] for m in metrics])
    from matplotlib.ticker import FuncFormatter

    marked, log_x, steps = curve_layout(metrics)

    def column(key: str, sign: float = 1.0) -> np.ndarray:
        return np.array([np.nan if m.get(key) is None else sign * m[key] for m in metrics], dtype=float)

    panels = [
        ("ELBO (nats per image)", column("lower_bound"), column("test_elbo"), column("valid_elbo")),
        ("reconstruction log p(x|z)", column("loglike"), column("test_loglike"), column("valid_loglike")),
        ("KL(q(z|x) || p(z))", column("reg", -1.0), column("test_kl"), column("valid_kl")),
    ]
    styles = {"train": ("o-", "#1f77b4"), "test": ("s--", "#d62728"), "validation": ("^:", "#2ca02c")}
    fig = _figure(12.0, 3.6)
    for ax, (title, *curves) in zip(fig.subplots(1, 3), panels, strict=True):
        for (label, (style, colour)), values in zip(styles.items(), curves, strict=True):
            if label != "train" and np.isnan(values).all():
                continue
            if marked:
                ax.plot(epochs, values, style, label=label, color=colour, markersize=4)
            else:  # lines alone; the validation set (a few hundred images) is the noisiest, so the faintest
                ax.plot(epochs, values, style[1:], label=label, color=colour, linewidth=1.2,
                        alpha=0.7 if label == "validation" else 1.0)
        for i, epoch in enumerate(steps):
            ax.axvline(epoch, color="#888888", linewidth=0.8, alpha=0.5, zorder=0,
                       label="learning rate steps" if i == 0 else None)
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))  # 1, 10, 100, 1,000
            ax.set_xlabel("epoch (log scale)")
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path, root)

"""Figures: each plot writes a real PNG with the layout and the pixels it promises, safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from vaelab import plots
from vaelab.catalog import Classes
from vaelab.errors import VaelabError
from vaelab.plots import (
    DPI,
    GAP,
    GAP_VALUE,
    LOG_EPOCHS,
    MAX_LR_STEPS,
    figure_path,
    lr_steps,
    mosaic,
    plot_class_samples,
    plot_curves,
    plot_embedding,
    plot_interpolation,
    plot_kl_per_dimension,
    plot_mix,
    plot_reconstructions,
    plot_samples,
)

SIDE = 28  # every digit is 28 x 28

# ----------------------------------------------------------------------------- helpers


def read_png(path: Path) -> np.ndarray:
    """The saved figure as (H, W, 3) floats in [0, 1], after checking it is a PNG."""
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3].astype(np.float64)


def assert_drawn(image: np.ndarray, width_in: float, height_in: float) -> None:
    """Not a blank canvas, the height asked for, and at least the width (more when a long title needs it)."""
    assert image.std() > 0.05
    assert image.shape[0] == pytest.approx(height_in * DPI, abs=1)
    assert image.shape[1] >= width_in * DPI - 1


def grey(image: np.ndarray) -> np.ndarray:
    return image.mean(-1)


def find_mosaic(image: np.ndarray, rows: int) -> tuple[int, int, float]:
    """Top-left pixel of the drawn mosaic and pixels per mosaic pixel.

    Every row and column crossing the mosaic is mostly not white (the gaps are
    grey), while text rows and columns are mostly white; the scale comes from the
    mosaic's height, since imshow keeps pixels square.
    """
    not_white = grey(image) < 0.95
    top, bottom = longest_run(not_white.sum(1))
    left, _ = longest_run(not_white.sum(0))
    return top, left, (bottom - top) / (rows * (SIDE + GAP) - GAP)


def longest_run(counts: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest stretch where counts are at least half their maximum.

    A title as wide as the figure can pass the threshold too, but it is a short
    stretch apart from the mosaic's long one.
    """
    hits = np.flatnonzero(counts >= 0.5 * counts.max())
    runs = np.split(hits, np.flatnonzero(np.diff(hits) > 1) + 1)
    run = max(runs, key=len)
    return int(run[0]), int(run[-1]) + 1


def cell_greys(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean grey of the middle of every tile of the mosaic drawn in `image`. (rows, cols)"""
    top, left, scale = find_mosaic(image, rows)
    g = grey(image)
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            y = top + (r * (SIDE + GAP) + SIDE / 2) * scale
            x = left + (c * (SIDE + GAP) + SIDE / 2) * scale
            half = SIDE / 4 * scale
            out[r, c] = g[int(y - half):int(y + half), int(x - half):int(x + half)].mean()
    return out


def has_colour(image: np.ndarray, colour: str, tol: float = 0.02) -> bool:
    return bool((np.abs(image - np.array(to_rgb(colour))).max(-1) < tol).any())


def levels(n: int) -> np.ndarray:
    """n distinct greys, none white (white tiles would merge with the background)."""
    return np.linspace(0.05, 0.85, n)


def constant_images(values: np.ndarray) -> np.ndarray:
    """One flat 28 x 28 image per value, same leading shape as `values`."""
    return np.broadcast_to(np.asarray(values, dtype=np.float32)[..., None, None],
                           (*np.shape(values), SIDE, SIDE)).copy()


# ----------------------------------------------------------------------------- mosaic


def test_mosaic_places_every_tile_and_fills_the_gaps():
    images = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    out = mosaic(images, gap=2, fill=-1.0)
    assert out.shape == (2 * (4 + 2) - 2, 3 * (5 + 2) - 2) == (10, 19)
    assert out.dtype == np.float32
    covered = np.zeros(out.shape, dtype=bool)
    for r in range(2):
        for c in range(3):
            y, x = r * 6, c * 7
            np.testing.assert_array_equal(out[y:y + 4, x:x + 5], images[r, c])
            covered[y:y + 4, x:x + 5] = True
    assert (out[~covered] == -1.0).all()
    assert (~covered).sum() == 10 * 19 - 6 * 20
    # spot checks: first pixel of tile (1, 2), a gap column, a gap row
    assert out[6, 14] == images[1, 2, 0, 0] == 100
    assert (out[:, 5:7] == -1).all() and (out[4:6, :] == -1).all()


def test_mosaic_defaults():
    out = mosaic(np.ones((2, 2, SIDE, SIDE), dtype=np.float32))
    assert out.shape == (2 * SIDE + GAP, 2 * SIDE + GAP)
    assert out[SIDE, 0] == pytest.approx(GAP_VALUE)
    assert out[0, 0] == 1.0


def test_mosaic_without_gap():
    images = np.random.default_rng(0).random((2, 2, 3, 3)).astype(np.float32)
    out = mosaic(images, gap=0)
    np.testing.assert_array_equal(out, images.transpose(0, 2, 1, 3).reshape(6, 6))


# ----------------------------------------------------------------------------- digit grids


def test_plot_reconstructions_one_row(tmp_path):
    n = 6
    originals = constant_images(levels(2 * n)[:n])
    reconstructions = constant_images(levels(2 * n)[n:])
    path = plot_reconstructions(originals, reconstructions, [3, 1, 4, 1, 5, 9], tmp_path / "recon.png")
    assert path == tmp_path / "recon.png"
    image = read_png(path)
    assert_drawn(image, 1.2 * n + 0.6, 2.5 + 0.5)
    # originals on top, each above its own reconstruction
    np.testing.assert_allclose(cell_greys(image, 2, n), levels(2 * n).reshape(2, n), atol=0.02)


def test_plot_reconstructions_several_rows_pads_the_last(tmp_path):
    rng = np.random.default_rng(0)
    originals = rng.random((11, SIDE, SIDE)).astype(np.float32)
    reconstructions = rng.random((11, SIDE, SIDE)).astype(np.float32)
    path = plot_reconstructions(originals, reconstructions, list(range(11)), tmp_path / "r.png", per_row=4)
    image = read_png(path)
    assert_drawn(image, 1.2 * 4 + 0.6, 2.5 * 3 + 0.5)  # 3 rows of 4 pairs, taller than wide
    assert image.shape[0] > image.shape[1]


def test_plot_samples_grid(tmp_path):
    n = 15
    values = levels(n)
    path = plot_samples(constant_images(values), tmp_path / "samples.png", "prior samples")
    image = read_png(path)
    assert_drawn(image, 0.9 * 10 + 0.4, 0.9 * 2 + 0.7)  # rows of 10
    assert image.shape[1] / image.shape[0] > 3
    cells = cell_greys(image, 2, 10)
    np.testing.assert_allclose(cells[0], values[:10], atol=0.02)  # row-major order
    np.testing.assert_allclose(cells[1, :5], values[10:], atol=0.02)
    np.testing.assert_allclose(cells[1, 5:], 0, atol=0.02)  # padding is black


def test_plot_samples_twenty_in_rows_of_ten_is_wide(tmp_path):
    images = np.random.default_rng(1).random((20, SIDE, SIDE)).astype(np.float32)
    image = read_png(plot_samples(images, tmp_path / "s.png", "twenty"))
    assert_drawn(image, 9.4, 2.5)
    assert image.shape[1] > image.shape[0]


def test_plot_samples_fewer_than_a_row(tmp_path):
    image = read_png(plot_samples(constant_images(levels(3)), tmp_path / "s.png", "three"))
    assert_drawn(image, 0.9 * 3 + 0.4, 0.9 + 0.7)
    np.testing.assert_allclose(cell_greys(image, 1, 3)[0], levels(3), atol=0.02)


def test_plot_class_samples_one_row_per_class(tmp_path):
    values = levels(12).reshape(3, 4)
    path = plot_class_samples(constant_images(values), [1, 4, 7], tmp_path / "classes.png")
    image = read_png(path)
    assert_drawn(image, 0.62 * 4 + 1.0, 0.62 * 3 + 0.9)
    np.testing.assert_allclose(cell_greys(image, 3, 4), values, atol=0.02)


# ----------------------------------------------------------------------------- mixing matrix


def test_plot_mix_is_square_with_cells_in_place(tmp_path):
    c = 6
    images = np.zeros((c, c, SIDE, SIDE), dtype=np.float32)
    for i in range(c):
        images[i, i] = 1.0  # white diagonal on black
    images[0, c - 1] = 1.0  # and the top-right corner: rows are rows, not columns
    path = plot_mix(images, list(range(c)), tmp_path / "mix.png")
    image = read_png(path)
    assert_drawn(image, 0.62 * c + 1.4, 0.62 * c + 1.3)
    assert 0.8 < image.shape[1] / image.shape[0] < 1.25
    white = np.eye(c, dtype=bool)
    white[0, c - 1] = True
    cells = cell_greys(image, c, c)
    assert (cells[white] > 0.97).all()
    assert (cells[~white] < 0.03).all()


def test_plot_mix_brightest_pixels_lie_on_the_diagonal(tmp_path):
    c = 4
    images = np.zeros((c, c, SIDE, SIDE), dtype=np.float32)
    for i in range(c):
        images[i, i] = 1.0
    image = read_png(plot_mix(images, [0, 2, 5, 8], tmp_path / "mix.png"))
    top, left, scale = find_mosaic(image, c)
    size = int((c * (SIDE + GAP) - GAP) * scale)
    cell = size / c
    region = grey(image)[top + 1:top + size - 1, left + 1:left + size - 1]  # one pixel inside the edges
    yy, xx = np.indices(region.shape)
    off = np.abs(yy - xx)  # distance from the diagonal, in pixels
    bright = region > 0.9
    assert bright.sum() > 0.8 * c * (SIDE * scale) ** 2  # the diagonal tiles, nearly whole
    assert (off[bright] < cell).all()  # and nothing bright elsewhere
    assert region[off > 1.1 * cell].mean() < 0.1  # black tiles and grey gaps
    assert region[off < cell / 4].mean() > 0.8


# ----------------------------------------------------------------------------- interpolation


def test_plot_interpolation_strip_goes_from_black_to_white(tmp_path):
    steps = 8
    values = np.linspace(0, 1, steps)  # all black first, all white last
    path = plot_interpolation(constant_images(values), tmp_path / "interp.png", start=3, end=5, method="slerp")
    image = read_png(path)
    assert_drawn(image, 0.85 * steps + 0.6, 1.75)
    assert image.shape[1] / image.shape[0] > 3
    cells = cell_greys(image, 1, steps)[0]
    np.testing.assert_allclose(cells, values, atol=0.02)
    # and, coarsely: within the strip's rows the right half is brighter than the left half
    top, _, scale = find_mosaic(image, 1)
    band = grey(image)[top:top + int(SIDE * scale)]
    half = band.shape[1] // 2
    assert band[:, half:].mean() > band[:, :half].mean() + 0.3


def test_plot_interpolation_two_steps(tmp_path):
    images = constant_images(np.array([0.2, 0.6]))
    image = read_png(plot_interpolation(images, tmp_path / "i.png", start=0, end=9, method="lerp"))
    assert_drawn(image, 0.85 * 2 + 0.6, 1.75)
    np.testing.assert_allclose(cell_greys(image, 1, 2)[0], [0.2, 0.6], atol=0.02)


# ----------------------------------------------------------------------------- embedding


def test_plot_embedding_colours_by_digit(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 3, 7], 40)
    points = rng.normal(size=(120, 2)) + np.array([[0, 0], [8, 0], [0, 8]])[np.repeat([0, 1, 2], 40)]
    path = plot_embedding(points, labels, tmp_path / "tsne.png", method="tsne")
    image = read_png(path)
    assert_drawn(image, 8.5, 7.0)
    from matplotlib import colormaps

    tab10 = colormaps[plots.PALETTE]
    for k in (0, 3, 7):  # the legend markers carry the exact colours of the digits present
        assert has_colour(image, tab10(k))
    for k in (1, 5, 9):  # and no colour of a digit that is not there
        assert not has_colour(image, tab10(k))


def test_classes_past_ten_get_colours_of_their_own_as_in_the_explorer(tmp_path):
    from matplotlib import colormaps

    assert [plots.class_colour(k) for k in range(10)] == [colormaps[plots.PALETTE](k)[:3] for k in range(10)]
    # the explorer's hsl(137.5 k, 60%, 45%): k = 10 is hue 295, i.e. rgb (0.675, 0.18, 0.72) by CSS's formula
    assert plots.class_colour(10) == pytest.approx((0.675, 0.18, 0.72), abs=1e-3)
    colours = [tuple(round(c, 3) for c in plots.class_colour(k)) for k in range(47)]  # EMNIST balanced: 47
    assert len(set(colours)) == 47
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 10, 20], 40)  # tab10 would paint all three alike
    points = rng.normal(size=(120, 2)) + np.array([[0, 0], [8, 0], [0, 8]])[np.repeat([0, 1, 2], 40)]
    image = read_png(plot_embedding(points, labels, tmp_path / "e.png", method="pca",
                                    classes=Classes(tuple(f"class {k}" for k in range(21)), "class")))
    assert all(has_colour(image, plots.class_colour(k)) for k in (0, 10, 20))


def test_plot_embedding_single_class(tmp_path):
    points = np.random.default_rng(1).normal(size=(30, 2))
    image = read_png(plot_embedding(points, np.full(30, 4), tmp_path / "e.png", method="pca"))
    assert_drawn(image, 8.5, 7.0)


# ----------------------------------------------------------------------------- KL per dimension

BLUE, GREY = "#1f77b4", "#c7c7c7"


def bars(image: np.ndarray) -> list[tuple[str, int]]:
    """(colour, height in pixels) of each bar, left to right."""
    blue = np.abs(image - np.array(to_rgb(BLUE))).max(-1) < 0.01
    light = np.abs(image - np.array(to_rgb(GREY))).max(-1) < 0.01
    columns = np.flatnonzero((blue | light).sum(0) > 8)  # antialiased text has a few such pixels
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    found = []
    for run in runs:
        if len(run) < 3:  # bars are wide; a thin run is a stray antialiased edge
            continue
        middle = run[len(run) // 2]
        colour = "blue" if blue[:, middle].sum() > light[:, middle].sum() else "grey"
        found.append((colour, int((blue | light)[:, middle].sum())))
    return found


def test_plot_kl_per_dimension_sorts_and_highlights(tmp_path):
    kl = np.array([0.5, 3.0, 0.0, 1.5, 2.0, 0.25, 1.0, 2.5])
    active = np.array([False, True, False, True, True, False, True, True])
    path = plot_kl_per_dimension(kl, active, tmp_path / "kl.png")
    image = read_png(path)
    assert_drawn(image, 6.0, 3.6)
    found = bars(image)
    order = np.argsort(-kl)[:-1]  # the zero bar has no height
    assert [c for c, _ in found] == ["blue" if active[j] else "grey" for j in order]
    heights = np.array([h for _, h in found], dtype=float)
    np.testing.assert_allclose(heights / heights[0], kl[order] / kl.max(), atol=0.04)


def test_the_kl_title_says_when_the_bars_are_the_top_layers_alone(tmp_path, monkeypatch):
    titles = []
    real = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda w, h, title=None, *a: titles.append(title) or real(w, h, title, *a))
    kl, active = np.array([2.0, 1.0, 0.5]), np.array([True, True, False])
    plot_kl_per_dimension(kl, active, tmp_path / "one.png")
    plot_kl_per_dimension(kl, active, tmp_path / "two.png", top_layer=True)
    assert titles == ["KL per latent dimension: 2 of 3 units active (blue: Var[mu] > 0.01), total 3.5 nats",
                      "KL per dimension of z, the top layer (h1 at its posterior mean): 2 of 3 units active "
                      "(blue: Var[mu] > 0.01), summed 3.5 nats"]


def test_plot_kl_per_dimension_all_inactive(tmp_path):
    kl = np.linspace(0.001, 0.004, 20)
    image = read_png(plot_kl_per_dimension(kl, np.zeros(20, dtype=bool), tmp_path / "kl.png"))
    assert_drawn(image, 6.0, 3.6)
    assert not has_colour(image, BLUE)
    assert [c for c, _ in bars(image)] == ["grey"] * 20


def test_plot_kl_per_dimension_widens_with_many_dimensions(tmp_path):
    kl = np.random.default_rng(0).random(64)
    image = read_png(plot_kl_per_dimension(kl, kl > 0.5, tmp_path / "kl.png"))
    assert_drawn(image, 0.16 * 64 + 2.0, 3.6)
    assert has_colour(image, BLUE) and has_colour(image, GREY)


# ----------------------------------------------------------------------------- training curves

RED = "#d62728"


def metrics(epochs: int, *, test: bool) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        reg, loglike = -20.0 - e, -150.0 + 10 * e
        row = {"epoch": e, "reg": reg, "loglike": loglike, "lower_bound": reg + loglike,
               "test_elbo": None, "test_loglike": None, "test_kl": None}
        if test:
            row.update(test_elbo=reg + loglike - 2, test_loglike=loglike - 1, test_kl=-reg + 1)
        rows.append(row)
    return rows


def test_plot_curves_train_and_test(tmp_path):
    image = read_png(plot_curves(metrics(5, test=True), tmp_path / "curves.png"))
    assert_drawn(image, 12.0, 3.6)
    assert has_colour(image, BLUE) and has_colour(image, RED)


def test_plot_curves_without_test_values(tmp_path):
    image = read_png(plot_curves(metrics(4, test=False), tmp_path / "curves.png"))
    assert_drawn(image, 12.0, 3.6)
    assert has_colour(image, BLUE)
    assert not has_colour(image, RED)


def test_plot_curves_one_epoch(tmp_path):
    image = read_png(plot_curves(metrics(1, test=True), tmp_path / "curves.png"))
    assert_drawn(image, 12.0, 3.6)
    assert has_colour(image, BLUE) and has_colour(image, RED)  # single markers still drawn


def with_lr(rows: list[dict], lrs: list[float | None]) -> list[dict]:
    return [{**row, "lr": lr} for row, lr in zip(rows, lrs, strict=True)]


def test_learning_rate_steps_are_the_epochs_after_which_it_changed():
    iwae = [1e-3] + [7.2e-4] * 3 + [5.2e-4] * 9 + [3.7e-4] * 27  # Burda et al.'s first four stages: 3^i passes
    assert lr_steps(with_lr(metrics(40, test=False), iwae)) == [1, 4, 13]
    assert lr_steps(with_lr(metrics(5, test=False), [1e-3] * 5)) == []  # a constant rate: the article's
    assert lr_steps(metrics(5, test=False)) == []  # not recorded (runs of early versions)
    assert lr_steps(with_lr(metrics(4, test=False), [1e-3, None, 5e-4, 5e-4])) == []  # not recorded for one
    decay = [1e-3 * 0.9 ** e for e in range(MAX_LR_STEPS + 2)]  # a step every epoch: no lines at all
    assert lr_steps(with_lr(metrics(len(decay), test=False), decay)) == []
    assert len(lr_steps(with_lr(metrics(MAX_LR_STEPS + 1, test=False), decay[:-1]))) == MAX_LR_STEPS


def test_a_long_runs_curves_mark_its_learning_rate_steps(tmp_path):
    n = LOG_EPOCHS + 100  # past MARKED_EPOCHS and LOG_EPOCHS: lines alone, on a log axis
    lrs = [1e-3 if e <= 13 else 5e-4 if e <= 121 else 2e-4 for e in range(1, n + 1)]
    step_grey = (np.array(to_rgb("#888888")) + 1) / 2  # the steps' grey at half opacity over white
    stepped = read_png(plot_curves(with_lr(metrics(n, test=True), lrs), tmp_path / "stepped.png"))
    assert_drawn(stepped, 12.0, 3.6)
    assert has_colour(stepped, BLUE) and has_colour(stepped, RED)
    plain = read_png(plot_curves(with_lr(metrics(n, test=True), [1e-3] * n), tmp_path / "plain.png"))
    grey = [int((np.abs(image - step_grey).max(-1) < 0.02).sum()) for image in (stepped, plain)]
    assert grey[0] - grey[1] > 3 * 2 * 200, grey  # two lines in each of three panels, ~250 px tall each


# ----------------------------------------------------------------------------- files


def test_parent_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "f.png"
    assert plot_samples(constant_images(levels(4)), path, "deep") == path
    read_png(path)
    other = tmp_path / "c" / "d" / "curves.png"
    assert plot_curves(metrics(2, test=False), str(other)) == other  # a str path works too
    read_png(other)


def test_a_link_planted_at_the_figure_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "f.png").symlink_to(target)
    plot_samples(constant_images(levels(4)), tmp_path / "f.png", "linked")
    assert not (tmp_path / "f.png").is_symlink()
    read_png(tmp_path / "f.png")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "precious.txt"]  # no temporary file left


def test_inside_a_run_no_linked_folder_is_followed(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(VaelabError, match=r"figures is a symbolic link; vaelab writes only into its own files and "):
        plot_curves(metrics(2, test=False), run / "figures" / "curves.png", root=run)
    assert list(elsewhere.iterdir()) == []
    (run / "figures").unlink()
    path = plot_curves(metrics(2, test=False), run / "figures" / "curves.png", root=run)  # made as a real folder
    assert path == run / "figures" / "curves.png" and not (run / "figures").is_symlink()
    read_png(path)


@pytest.mark.parametrize("name, magic", [("c.pdf", b"%PDF"), ("c.svg", b"<?xml"), ("c.PNG", b"\x89PNG")])
def test_the_format_follows_the_name(tmp_path, name, magic):
    path = plot_curves(metrics(2, test=True), tmp_path / name)
    assert path.read_bytes().startswith(magic)


def test_an_unsupported_format_is_refused_naming_the_supported_ones(tmp_path):
    with pytest.raises(VaelabError, match=r"k\.txt: the supported formats are \.png, \.pdf, \.svg"):
        plot_curves(metrics(2, test=True), tmp_path / "k.txt")
    assert list(tmp_path.iterdir()) == []


def test_figure_path_of_out(tmp_path):
    (tmp_path / "existing").mkdir()
    assert figure_path(str(tmp_path / "existing"), "kl") == tmp_path / "existing" / "kl.png"
    assert figure_path(f"{tmp_path / 'new'}/", "mix") == tmp_path / "new" / "mix.png"
    assert figure_path("k", "kl") == Path("k.png")
    assert figure_path("a/k.svg", "kl") == Path("a/k.svg")
    with pytest.raises(VaelabError, match=r"the supported formats are \.png, \.pdf, \.svg"):
        figure_path("k.txt", "kl")


# ----------------------------------------------------------------------------- class names


def _drawn_figure(monkeypatch, draw):
    """The matplotlib figure `draw` saves, laid out by the Agg renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    seen = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, root: seen.append(fig) or real(fig, path, root))
    draw()
    (fig,) = seen
    FigureCanvasAgg(fig).draw()
    return fig


def _boxes(texts) -> list:
    return [t.get_window_extent() for t in texts if t.get_text() and t.get_visible()]


def _apart_and_inside(boxes, fig) -> None:
    frame = fig.bbox
    for i, box in enumerate(boxes):
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1
        for other in boxes[i + 1:]:
            assert not box.overlaps(other), "labels overlap"


def test_long_class_names_stay_readable(tmp_path, monkeypatch):
    from vaelab.catalog import FASHION_MNIST

    classes = FASHION_MNIST.classes
    images = np.random.default_rng(0).random((10, 10, SIDE, SIDE)).astype(np.float32)
    fig = _drawn_figure(monkeypatch, lambda: plot_mix(images, list(range(10)), tmp_path / "m.png", classes=classes))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(classes.names)
    assert ax.get_xlabel() == ax.get_ylabel() == "class" and ax.get_title().startswith("Mixing classes")
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        _apart_and_inside(_boxes(ticks), fig)
    _apart_and_inside(_boxes([ax.title]), fig)

    fig = _drawn_figure(monkeypatch, lambda: plot_class_samples(images[:, :4], list(range(10)), tmp_path / "c.png",
                                                                classes=classes))
    ax = fig.axes[0]
    _apart_and_inside(_boxes([*ax.get_yticklabels(), ax.title, ax.yaxis.label]), fig)

    points = np.random.default_rng(1).normal(size=(200, 2))
    labels = np.arange(200) % 10
    fig = _drawn_figure(monkeypatch, lambda: plot_embedding(points, labels, tmp_path / "e.png", method="pca",
                                                            classes=classes))
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "class"
    assert [t.get_text() for t in legend.get_texts()] == list(classes.names)
    _apart_and_inside(_boxes(legend.get_texts()), fig)

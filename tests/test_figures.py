"""FIGURES: one list makes the figure commands and the report; figures name a run's classes."""

import dataclasses
import html
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.text import Text

from vaelab import checkpoint, explore, figures, plots, report
from vaelab.catalog import DIGITS, FASHION_MNIST, numbered
from vaelab.checkpoint import load_run
from vaelab.cli import build_parser, main

NAMES = list(FASHION_MNIST.classes.names)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _load_with(monkeypatch, classes):
    """Runs load as if their data info recorded `classes` (the test runs hold MNIST's images)."""
    real = checkpoint.load_run

    def load(path, **kwargs):
        run = real(path, **kwargs)
        return dataclasses.replace(run, data={**run.data, "classes": classes.to_dict()})

    monkeypatch.setattr(checkpoint, "load_run", load)
    monkeypatch.setattr(report, "load_run", load)


@pytest.fixture
def fashion(run_copy, monkeypatch):
    """The copy, loaded as if trained on Fashion-MNIST: its data info records the ten class names."""
    _load_with(monkeypatch, FASHION_MNIST.classes)
    return run_copy


@pytest.fixture
def mnist(run_copy, monkeypatch):
    """The copy, loaded as MNIST's digits (its folder has no class names, so it records numbered classes)."""
    _load_with(monkeypatch, DIGITS)
    return run_copy


@pytest.fixture
def drawn(monkeypatch):
    """Every matplotlib figure written, in order."""
    seen = []
    real = plots._save

    def save(fig, path, root):
        seen.append(fig)
        return real(fig, path, root)

    monkeypatch.setattr(plots, "_save", save)
    return seen


def texts(fig) -> list[str]:
    """Every text of a figure: titles, axis labels, tick labels, legend entries, annotations."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _status(args):
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


# ----------------------------------------------------------------------------- one list drives everything


def test_every_figure_is_a_command_with_its_options():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for spec in figures.FIGURES:
        assert spec.name in commands
        p = commands[spec.name]
        for option in figures.all_options(spec):
            for flag in option.flags:
                action = p._option_string_actions[flag]
                assert (action.dest, action.default) == (option.dest, option.default), (spec.name, flag)
        assert vars(figures.defaults(spec)).keys() >= {o.dest for o in figures.all_options(spec)}


def test_the_commands_keep_their_names_flags_and_defaults():
    parse = build_parser().parse_args
    a = parse(["reconstruct", "R"])
    assert (a.n, a.seed, a.style, a.out, a.data_dir) == (16, 0, "mean", None, None)
    a = parse(["generate", "R", "--digit", "3"])
    assert (a.digit, a.n, a.n_stats, a.prior) == (3, 20, 10000, False)
    a = parse(["interpolate", "R", "--from", "1", "--to", "Bag"])
    assert (a.start, a.end, a.steps, a.method) == (1, "Bag", 10, "lerp")
    assert parse(["embed", "R"]).method == "tsne"
    assert {"mix", "kl", "curves", "report"} <= set(next(x for x in build_parser()._actions
                                                        if x.dest == "command").choices)


def test_an_added_figure_is_a_command_and_a_report_section(run_copy, monkeypatch, capsys):
    extra = figures.FigureSpec(
        "kl-again", "the KL figure once more", lambda run, codes, a, **to: explore.figure_kl(run, codes, **to),
        options=(figures.Option(("--note",), "note", "none", help="a flag of its own"),), style=False,
        title="An extra section", caption="Added in one place only.")
    monkeypatch.setattr(figures, "FIGURES", [*figures.FIGURES, extra])
    assert main(["kl-again", str(run_copy), "--n-stats", "100", "--note", "x"]) == 0
    assert capsys.readouterr().out == f"wrote {run_copy / 'figures' / 'kl-again.png'}\n"
    (run_copy / "figures" / "kl-again.png").unlink()

    said = []
    report.write_report(run_copy, embed_method="pca", n_stats=300, echo=said.append)
    page = html.unescape((run_copy / "report.html").read_text())
    assert "<h2>An extra section</h2><p>Added in one place only.</p>" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 10  # the report's nine and this one
    drawn = [line.split()[0] for line in said]
    assert drawn[-2:] == ["kl-again", "explorer"]  # the figures in FIGURES' order, then the explorer
    assert (run_copy / "figures" / "kl-again.png").is_file()
    run = load_run(run_copy)
    ctx = figures.Context(run=run, classes=explore.classes_of(run), present=list(range(10)), n_train=300,
                          embed_method="pca")
    for spec in figures.FIGURES:  # every figure: its section and its image
        assert f"<h2>{figures.text(spec.title, ctx)}</h2>" in page
        assert (run_copy / "figures" / f"{spec.name}.png").is_file()


# ----------------------------------------------------------------------------- class names


@pytest.mark.parametrize("args, wanted", [
    (["mix"], ["Mixing classes: decoding the average of two class means", "class", *NAMES]),
    (["embed", "--method", "pca"], ["PCA of 300 latent codes (posterior means), coloured by class", "class",
                                    *NAMES]),
    (["interpolate", "--from", "trouser", "--to", "Ankle boot"],
     ["From Trouser to Ankle boot (lerp, 10 steps)", "Trouser", "Ankle boot"]),
    (["generate", "--class", "Bag", "-n", "5"],
     ["5 new Bag images: class mean + noise with the class's mean posterior variance"]),
    (["generate", "--all", "-n", "3"], ["New images: class mean + noise with the class's mean posterior variance",
                                        "class", *NAMES]),
    (["reconstruct", "-n", "8"], ["Test images (top) and their reconstructions (bottom)"]),
])
def test_figures_name_the_classes(fashion, tmp_path, drawn, args, wanted):
    stats = [] if args[0] == "reconstruct" else ["--n-stats", "300"]
    assert main([args[0], str(fashion), *args[1:], *stats, "--out", str(tmp_path / "f.png")]) == 0
    (fig,) = drawn
    found = texts(fig)
    for text in wanted:
        assert text in found, (text, found)
    assert not any("digit" in t.lower() for t in found), found
    if args[0] == "reconstruct":  # each pair is labelled with its class's name
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert len(labels) == 8 and set(labels) <= set(NAMES)


def test_a_class_by_name_or_number_draws_the_same_images(fashion, tmp_path, drawn):
    for name, value in (("name", "Trouser"), ("number", "1"), ("digit", "1")):
        flag = "--digit" if name == "digit" else "--class"
        assert main(["generate", str(fashion), flag, value, "--seed", "3", "--n-stats", "300", "-n", "6",
                     "--out", str(tmp_path / f"{name}.png")]) == 0
    images = [imread(tmp_path / f"{name}.png") for name in ("name", "number", "digit")]
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])
    assert [f.axes[0].get_title() for f in drawn] == ["6 new Trouser images: class mean + noise with the "
                                                      "class's mean posterior variance"] * 3


@pytest.mark.parametrize("args", [["generate", "--class", "Foo"], ["interpolate", "--from", "Bag", "--to", "Foo"],
                                  ["generate", "--class", "12"]])
def test_an_unknown_class_is_one_line_naming_the_valid_ones(fashion, capsys, args):
    assert _status([args[0], str(fashion), *args[1:], "--n-stats", "100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaelab: error: ") and "Traceback" not in err
    assert "class" in err and all(name in err for name in NAMES) and "digit" not in err


def test_digits_keep_their_words(mnist, tmp_path, drawn, capsys):
    trained_run = mnist
    for flag in ("--class", "--digit"):
        assert main(["generate", str(trained_run), flag, "3", "--n-stats", "300", "-n", "4",
                     "--out", str(tmp_path / f"{flag[2:]}.png")]) == 0
    assert np.array_equal(imread(tmp_path / "class.png"), imread(tmp_path / "digit.png"))
    assert drawn[0].axes[0].get_title().startswith("4 new 3s: ")
    assert main(["mix", str(trained_run), "--n-stats", "300", "--out", str(tmp_path / "m.png")]) == 0
    ax = drawn[-1].axes[0]
    assert ax.get_title() == "Mixing digits: decoding the average of two class means"
    assert ax.get_xlabel() == ax.get_ylabel() == "digit"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in range(10)]
    capsys.readouterr()
    assert _status(["generate", str(trained_run), "--class", "three"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no digit 'three'" in err and "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in err


def test_numbered_classes_say_class(run_copy, monkeypatch, tmp_path, drawn):
    _load_with(monkeypatch, numbered(10))  # a folder of IDX files without class names
    assert main(["mix", str(run_copy), "--n-stats", "300", "--out", str(tmp_path / "m.png")]) == 0
    ax = drawn[0].axes[0]
    assert ax.get_title().startswith("Mixing classes") and ax.get_xlabel() == "class"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in range(10)]


def test_the_report_names_the_classes(fashion):
    report.write_report(fashion, embed_method="pca", n_stats=300, echo=lambda s: None)
    page = html.unescape((fashion / "report.html").read_text())
    for text in ("<h2>New images of each class</h2>", "<h2>Mixing classes</h2>",
                 "Test images the model never trained on", "mean codes of classes i and j",
                 "Linear interpolation between the mean codes of Trouser and Coat, then spherical interpolation "
                 "between Dress and Bag.", "<td>T-shirt/top, Trouser, Pullover"):
        assert text in page
    assert "digit" not in page.lower() and "article's example" not in page


# ----------------------------------------------------------------------------- image shape


def test_figures_use_the_runs_image_shape(run_copy, tmp_path, drawn):
    run = load_run(run_copy)
    assert explore.image_shape(run) == (28, 28)
    run.model.image_shape = (14, 56)  # what a model registry will record: 784 pixels, not square
    assert explore.image_shape(run) == (14, 56)
    codes = explore.encode_subset(run, n=200, seed=0)
    explore.figure_mix(run, codes, tmp_path / "m.png")
    explore.figure_reconstructions(run, codes, tmp_path / "r.png", n=3)
    mix, recon = (fig.axes[0].images[0].get_array().shape for fig in drawn)
    assert mix == (10 * (14 + plots.GAP) - plots.GAP, 10 * (56 + plots.GAP) - plots.GAP)
    assert recon == (2 * (14 + plots.GAP) - plots.GAP, 3 * (56 + plots.GAP) - plots.GAP)


def test_the_curves_caption_says_how_a_long_run_is_drawn():
    spec = next(s for s in figures.FIGURES if s.name == "curves")

    def caption(lrs):
        rows = [{"epoch": e, "lr": lr} for e, lr in enumerate(lrs, 1)]
        return spec.caption(SimpleNamespace(run=SimpleNamespace(metrics=rows)))  # all the caption reads

    base = ("Per-image ELBO and its two terms after each epoch, on the training set (mean over the epoch's "
            "batches), the test set and, when images were held out, the validation set.")
    assert caption([1e-3] * 10) == base  # the article's run: as before
    iwae = [1e-3] + [7.2e-4] * 3 + [5.2e-4] * 9 + [3.7e-4] * 27 + [2.7e-4] * 81 + [1.9e-4] * 243 + [1.4e-4] * 100
    assert caption(iwae) == base + (" Epochs are on a log scale. Grey lines mark the learning rate's steps, after "
                                    "epochs 1, 4, 13, 40, 121 and 364.")
    assert caption(iwae[:40]) == base + " Grey lines mark the learning rate's steps, after epochs 1, 4 and 13."
    assert caption(iwae[:3]) == base + " Grey lines mark the learning rate's steps, after epoch 1."
    assert caption([1e-3] * plots.LOG_EPOCHS) == base + " Epochs are on a log scale."

"""The HTML report: self-contained, complete, and never showing scores of other weights or data."""

import base64
import hashlib
import html
import json
import os
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import csp_of, forge_eval, write_idx
from vaelab import checkpoint, pages, report
from vaelab.catalog import DIGITS
from vaelab.checkpoint import load_run
from vaelab.cli import main
from vaelab.config import TrainConfig
from vaelab.data import load_split
from vaelab.device import describe
from vaelab.evalfile import EvalResult, read_eval
from vaelab.figures import interpolation_strips
from vaelab.files import display
from vaelab.presets import load_preset
from vaelab.report import _render, current_scores, write_report
from vaelab.training import resume, train

PNG = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _load_as_digits(monkeypatch):
    """Runs loaded as MNIST's digits: the test folders hold MNIST's images but no class names, so their runs
    record numbered classes, which figures call 'class 3' rather than 'digit 3'."""
    real = checkpoint.load_run

    def load(path, **kwargs):
        run = real(path, **kwargs)
        return replace(run, data={**run.data, "classes": DIGITS.to_dict()})

    monkeypatch.setattr(checkpoint, "load_run", load)
    monkeypatch.setattr(report, "load_run", load)


@pytest.fixture
def as_digits(monkeypatch):
    _load_as_digits(monkeypatch)


def test_report_embeds_every_figure_and_the_scores(trained_run, capsys, as_digits):
    assert main(["report", str(trained_run), "--embed", "pca", "--n-stats", "500"]) == 0
    out = capsys.readouterr().out
    path = trained_run / "report.html"
    assert f"report written to {path}" in out and "scoring" not in out  # eval.json holds these weights
    assert re.search(rf"^  explorer +\d+\.\d s  {re.escape(str(trained_run / 'explorer.html'))}$", out, re.M)
    page = html.unescape(path.read_text())
    assert '<a href="explorer.html">Open the explorer</a>, one offline page beside this one' in page
    images = _images(page)
    assert len(images) == 9  # curves, reconstructions, per-class samples, prior, mix, 2 strips, map, KL
    assert all(data[:8] == PNG for data in images)
    assert not re.search(r'(src|href)="https?:', page)  # nothing to fetch: it opens offline
    for title in ("Training curves", "Reconstructions", "New digits of each class", "Samples from the prior",
                  "Mixing digits", "Interpolating", "Map of the latent space", "Posterior collapse"):
        assert title in page
    assert ("between the mean codes of 1 and 4 (the article's example), then spherical interpolation between "
            "3 and 8.") in page and "Only the digits" not in page
    scores = json.loads((trained_run / "eval.json").read_text())
    assert f"{scores['elbo']:.2f}" in page and f"{scores['log_likelihood']:.2f}" in page
    run = load_run(trained_run)
    assert (f"Figures and test scores of the weights {run.weights_sha256[:12]} at step {run.step:,}, on "
            f"{scores['n_images']:,} test images.") in page
    assert f"Trained on: {describe(torch.device('cpu'))}." in page  # the machine its epochs recorded
    assert "<th>latent_size</th>" in page and "<th>binarization</th>" in page and "<th>adam_beta1</th>" in page
    for unused in ("channels", "lower_latent_size", "beta", "stages", "preset"):  # an mlp's, the ELBO's: not shown
        assert f"<th>{unused}</th>" not in page
    explorer = (trained_run / "explorer.html").read_text()
    data = re.search(r'<script type="application/json" id="vaelab-data">(.*?)</script>', explorer, re.S)
    assert json.loads(data.group(1))["run"]["weights_sha256"] == run.weights_sha256
    assert {p.name for p in (trained_run / "figures").iterdir()} >= {
        "curves.png", "embed.png", "generate.png", "interpolate.png", "interpolate-slerp.png", "kl.png",
        "mix.png", "prior.png", "reconstruct.png"}


def test_report_scores_the_run_itself_when_it_has_no_scores(run_copy, capsys):
    (run_copy / "eval.json").unlink()
    assert main(["report", str(run_copy), "--embed", "pca", "--n-stats", "200", "--iw-k", "3",
                 "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{run_copy / 'eval.json'} does not exist; scoring the run now (IW K=3, `--iw-k` to change)"
    assert lines[1].split()[0] == "curves"  # scored before anything was drawn
    scores = read_eval(load_run(run_copy))
    assert scores is not None and scores.iw_k == 3 and scores.seed == scores.iw_seed == 0
    assert f"{scores.log_likelihood:.2f}" in (run_copy / "report.html").read_text()
    (run_copy / "eval.json").unlink()  # --seed: the figures' draws and the scores' noise alike
    assert main(["report", str(run_copy), "--embed", "pca", "--n-stats", "200", "--iw-k", "3", "--seed", "4",
                 "--device", "cpu"]) == 0
    again = read_eval(load_run(run_copy))
    assert again.seed == again.iw_seed == 4 and again.log_likelihood != scores.log_likelihood


@pytest.mark.parametrize("how", ["NaN", "other weights"])
def test_forged_scores_are_replaced_by_scoring_the_run(run_copy, how):
    run = load_run(run_copy)
    forge_eval(run_copy / "eval.json", how)
    said = []
    scores = current_scores(run, iw_k=2, echo=said.append)
    assert len(said) == 1 and said[0].endswith("; scoring the run now (IW K=2, `--iw-k` to change)")
    assert (scores.weights_sha256, scores.step, scores.iw_k) == (run.weights_sha256, run.step, 2)
    assert read_eval(run) == scores  # and eval.json is whole again


def test_report_warns_about_other_data(run_copy, small_mnist, tmp_path):
    scores = json.loads((run_copy / "eval.json").read_text())
    (run_copy / "eval.json").write_text(json.dumps({**scores, "data_matches_run": False}))
    other = shutil.copytree(small_mnist, tmp_path / "other")
    images = load_split("train", small_mnist).images.numpy().copy()
    images[0, 0, 0] ^= 1
    (other / "train-images-idx3-ubyte.gz").unlink()
    write_idx(other / "train-images-idx3-ubyte", images)
    with pytest.warns(UserWarning, match="train-images-idx3-ubyte"):
        write_report(run_copy, embed_method="pca", n_stats=200, data_dir=str(other), echo=lambda s: None)
    page = (run_copy / "report.html").read_text()
    assert "(eval.json: data_matches_run is false)" in page
    assert re.search(r'class="warn">The training images of these figures are not the ones the run was trained '
                     r"with: train-images-idx3-ubyte: recorded", page)
    assert "The test images" not in page  # those are the run's own


def test_collapse_warning_only_when_most_units_are_inactive(trained_run):
    run = load_run(trained_run)
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    assert "collapsed" in _render(run, replace(scores, active_units=3), [])
    assert "collapsed" not in _render(run, replace(scores, active_units=5), [])
    assert "data_matches_run" not in _render(run, scores, [])


@pytest.mark.parametrize(("dataset", "said"), [
    ("mnist", "No judge has scored this run's generated images: it was scored with <code>--no-judge</code>, or "
              "before vaelab had a judge; <code>vaelab eval {run}</code> adds the shipped mnist judge's scores."),
    ("kmnist", "No judge ships for kmnist: <code>vaelab judge train</code> makes one from the run's training images "
               "(see <code>vaelab judge train --help</code>), and <code>vaelab eval {run} --judge FILE</code> scores "
               "with it."),
])
def test_a_report_without_judge_scores_says_why_and_how_to_get_them(trained_run, dataset, said):
    run = load_run(trained_run)
    run = replace(run, config=replace(run.config, dataset=dataset))
    scores = replace(EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text())), judge=None)
    assert said.format(run=display(trained_run)) in html.unescape(_render(run, scores, []))


def test_a_preset_runs_report_shows_the_papers_number_in_its_own_card(trained_run):
    run = load_run(trained_run)
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    card = ('<div class="card"><div class="k">the paper\'s log p(x)</div><div class="v">-84.78</div>'
            '<div class="u">K = 5,000, 3,280 passes</div></div>')
    preset = replace(run, config=TrainConfig.from_dict(load_preset("iwae/1-layer/iwae-k50")))  # as the preset is
    assert card in html.unescape(_render(preset, scores, []))
    assert "the paper" not in _render(run, scores, [])  # the article's run reproduces no table
    changed = replace(preset, config=replace(preset.config, samples=5))  # `--preset iwae/1-layer/iwae-k50 --samples 5`
    page = html.unescape(_render(changed, scores, []))
    assert "the paper's log p(x)" not in page
    assert ('<p class="warn">This run started from preset iwae/1-layer/iwae-k50 but trains otherwise (samples 5 '
            "instead of 50), so it is not that cell of the paper, and the paper's number is not shown beside its "
            "own.</p>") in page


def test_checks_come_before_any_drawing(run_copy, capsys):
    shutil.rmtree(run_copy / "figures", ignore_errors=True)
    (run_copy / "eval.json").unlink()
    assert main(["report", str(run_copy), "--iw-k", "-1"]) == 2
    assert "--iw-k must be between 1 and" in capsys.readouterr().err
    assert not (run_copy / "figures").exists() and not (run_copy / "eval.json").exists()


@pytest.mark.parametrize("classes, strips", [
    (list(range(10)), [(1, 4, "lerp"), (3, 8, "slerp")]),
    ([1, 3, 4, 7], [(1, 4, "lerp"), (1, 7, "slerp")]),
    ([2, 5], [(2, 5, "lerp"), (2, 5, "slerp")]),
    ([7], []),
])
def test_interpolation_strips_use_the_classes_present(classes, strips):
    assert interpolation_strips(classes) == strips


def _mnist_of(folder, digits, n_train=300, n_test=60):
    """A small MNIST-format folder holding only the given digits."""
    folder.mkdir(parents=True)
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        s = load_split(split)
        keep = torch.isin(s.labels, torch.tensor(digits))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", s.images[keep][:n].numpy())
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", s.labels[keep][:n].numpy().astype(np.uint8))
    return folder


@pytest.mark.parametrize("digits, images, caption", [
    ([1, 3, 4, 7], 9, "between the mean codes of 1 and 4 (the article's example), then spherical "
                      "interpolation between 1 and 7."),
    ([7], 7, None),
])
def test_report_of_data_with_only_some_digits(tmp_path, digits, images, caption, monkeypatch):
    data = _mnist_of(tmp_path / "data", digits)
    path = tmp_path / "run"
    train(TrainConfig(data_dir=str(data), latent_size=2, hidden_size=8, epochs=1), path, echo=lambda s: None)
    _load_as_digits(monkeypatch)
    said = []
    write_report(path, embed_method="pca", n_stats=300, iw_k=2, echo=said.append)
    page = html.unescape((path / "report.html").read_text())
    assert len(_images(page)) == images
    names = ", ".join(str(d) for d in digits[:-1])
    assert f"Only the digits {names + ' and ' if names else ''}{digits[-1]} occur in these images." in page
    assert "3 and 8" not in page
    if caption:
        assert caption in page
    else:
        assert "Interpolating" not in page and not (path / "figures" / "interpolate.png").exists()
        assert any("interpolate" in line and "skipped" in line for line in said)


def test_a_run_path_that_is_not_utf8(trained_run, tmp_path, capsys):
    try:
        run = shutil.copytree(trained_run, tmp_path / os.fsdecode(b"run-\xff"))
    except (OSError, UnicodeError):
        pytest.skip("this filesystem refuses names that are not UTF-8")
    shown = display(run)
    assert shown.endswith("run-\ufffd")
    (run / "eval.json").unlink()
    assert main(["report", str(run), "--embed", "pca", "--n-stats", "200", "--iw-k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{shown}/eval.json does not exist; scoring" in out
    assert f"{shown}/figures/mix.png" in out
    assert out.endswith(f"{shown}/explorer.html\nreport written to {shown}/report.html\n")
    page = (run / "report.html").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "<title>vaelab report: run-\ufffd</title>" in page and shown in page
    assert main(["curves", str(run)]) == 0
    assert capsys.readouterr().out == f"wrote {shown}/figures/curves.png\n"


def test_a_report_of_a_run_in_training_says_so_and_scores_the_weights_it_draws(run_copy, small_mnist, tmp_path,
                                                                                monkeypatch):
    from vaelab.rundir import RunDir

    train(TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=1), tmp_path / "later", echo=lambda s: None)
    later = (tmp_path / "later" / checkpoint.CHECKPOINT).read_bytes()  # the checkpoint training writes next
    drawn = load_run(run_copy)
    (run_copy / "eval.json").unlink()
    real = report.evaluate_run

    def training_moves_on(*args, **kwargs):  # a new checkpoint lands while the report scores the run
        (run_copy / checkpoint.CHECKPOINT).write_bytes(later)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "evaluate_run", training_moves_on)
    said = []
    with RunDir.existing(run_copy):  # as `vaelab train --resume` holds it
        write_report(run_copy, embed_method="pca", n_stats=200, iw_k=2, device="cpu", echo=said.append)
    if os.path.exists("/proc/locks"):  # where a run's trainer can be told
        assert said[0] == (f"{run_copy} is still training (pid {os.getpid()}): the report shows its checkpoint of "
                           f"epoch 3, which its next checkpoint will replace; to keep the checkpoint you report on, "
                           f"report on a copy: vaelab copy {run_copy} --out DIR")
        assert "Drawn while the run was still training, from its checkpoint of epoch 3 of 3" in \
            html.unescape((run_copy / "report.html").read_text())
    page = html.unescape((run_copy / "report.html").read_text())
    digest = drawn.weights_sha256[:12]
    assert f"Figures and test scores of the weights {digest} at step 24, on " in page
    assert drawn.weights_sha256 != load_run(run_copy).weights_sha256  # the run did move on meanwhile


def test_the_page_allows_only_its_own_style_and_images_inside_it(trained_run):
    run = load_run(trained_run)
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    page = _render(run, scores, [])
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(styles) == 1 and "<script" not in page
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert csp_of(page) == {"default-src": "'none'", "style-src": f"'sha256-{digest}'", "img-src": "data:",
                          "base-uri": "'none'", "form-action": "'none'"}
    assert styles[0] == pages.packaged_text("vaelab", "templates/report.css")


HOSTILE = "</title><script>window.pwned=1</script>"


def test_strings_from_the_run_show_as_text_never_as_markup(trained_run, tmp_path):
    run = load_run(shutil.copytree(trained_run, tmp_path / HOSTILE.replace("/", "|")))
    run = replace(run, config=replace(run.config, data_dir=HOSTILE))
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    page = _render(run, scores, [])
    assert "<script" not in page and page.count("</title>") == 1
    shown = display(run.path.name)
    assert f"<title>vaelab report: {shown}</title>" in html.unescape(page)
    assert f"<th>data_dir</th><td>{HOSTILE}</td>" in html.unescape(page)


def test_the_page_names_both_weights_when_the_scores_are_of_others(trained_run):
    run = load_run(trained_run)
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    other = replace(scores, weights_sha256="0123456789ab" + "0" * 52, step=7)
    page = html.unescape(_render(run, other, []))
    assert (f"Figures drawn from the weights {run.weights_sha256[:12]} at step {run.step:,}; test scores of the "
            f"weights 0123456789ab at step 7, on {scores.n_images:,} test images.") in page


def test_a_report_of_a_run_stopped_before_its_end_says_so_and_how_to_finish_it(small_mnist, tmp_path, monkeypatch):
    import vaelab.training as train_module
    from conftest import stop_after_steps
    from vaelab.signals import stop_after_batch
    from vaelab.training import TrainingInterrupted

    stop_after_steps(monkeypatch, 13)  # Ctrl-C after the 13th batch: epoch 2 of 3, batch 5
    path = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(data_dir=str(small_mnist), latent_size=2, hidden_size=8, epochs=3), path,
              echo=lambda s: None)
    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    write_report(path, embed_method="pca", n_stats=200, iw_k=2, device="cpu", echo=lambda s: None)
    page = html.unescape((path / "report.html").read_text())
    assert (f'<p class="warn">Training stopped before its end, with 1 of the run\'s 3 passes done (step 13), so '
            f"these are not its final numbers; <code>vaelab train --resume {display(path)}</code> trains the "
            "rest.</p>") in page
    assert '<div class="k">epochs</div><div class="v">1 of 3</div>' in page
    resume(path, epochs=3, echo=lambda s: None)
    write_report(path, embed_method="pca", n_stats=200, iw_k=2, device="cpu", echo=lambda s: None)
    page = html.unescape((path / "report.html").read_text())
    assert "Training stopped" not in page and '<div class="k">epochs</div><div class="v">3</div>' in page


def test_the_data_folder_is_called_bundled_only_for_the_bundled_mnist(trained_run):
    run = load_run(trained_run)
    rows = dict(report._config_rows(run))
    assert rows["data_dir"] == display(run.config.data_dir)  # given: shown as given
    bundled = replace(run, config=replace(run.config, data_dir=None, dataset="mnist"),
                      data={**run.data, "source": "bundled MNIST"})
    assert dict(report._config_rows(bundled))["data_dir"] == "bundled"
    found = replace(run, config=replace(run.config, data_dir=None, dataset="fashion-mnist"),  # found by name
                    data={**run.data, "source": "/home/u/.cache/vaelab/datasets/fashion-mnist"})
    rows = dict(report._config_rows(found))
    assert (rows["data_dir"], rows["source"]) == ("none given (see source)",
                                                  "/home/u/.cache/vaelab/datasets/fashion-mnist")


@pytest.mark.parametrize("style", ["mean", "binary"])
def test_captions_say_how_decoded_images_are_shown(trained_run, style):
    from vaelab import explore, figures

    run = load_run(trained_run)
    ctx = figures.Context(run=run, classes=explore.classes_of(run), present=list(range(10)), n_train=300,
                          style=style)
    plan = {spec.name: panel for spec, panel in report._plan(ctx, seed=0, n_stats=300, style=style, data_dir=None)
            if not isinstance(panel, str)}
    said = " Decoded pixels are shown black and white, 1 where the Bernoulli mean is above 0.5 (--style binary)"
    reconstruct = plan["reconstruct"].caption
    if style == "mean":
        assert "the Bernoulli means decoded from their posterior means (bottom)." in reconstruct
        assert not any(said in panel.caption for panel in plan.values())
    else:
        assert "the images decoded from their posterior means (bottom)." in reconstruct
        assert "Bernoulli means decoded" not in reconstruct
        decoded = {spec.name for spec in figures.FIGURES if spec.style}
        assert decoded >= {"reconstruct", "generate"} and {"curves", "kl", "embed"}.isdisjoint(decoded)
        assert {name for name, panel in plan.items() if said in panel.caption} == decoded & set(plan)
        assert all(panel.args.style == "binary" for name, panel in plan.items() if name in decoded)


def test_each_figure_is_described_for_those_who_cannot_see_it():
    from vaelab.report import alt_text

    assert alt_text("Training curves", "curves") == "Training curves: ELBO, reconstruction and KL per epoch"
    assert alt_text("", "interpolate-slerp") == "The strip of images between two classes' mean codes (slerp)"
    assert alt_text("Samples from the prior", "prior") == "Samples from the prior"
    assert alt_text("", "kl") == "KL per latent dimension and the active units"

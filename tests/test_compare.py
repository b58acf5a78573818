"""vaelab compare: two runs' log-likelihoods, image by image over the test images both were scored on."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.compare import compare_runs, same_draw
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.evaluate import evaluate_run
from vaelab.rundir import RunDir
from vaelab.training import train


@pytest.fixture(scope="module")
def two_runs(small_mnist, tmp_path_factory):
    """Two small runs (seeds 0 and 1), scored with K = 5 on the same 500 test images."""
    root = tmp_path_factory.mktemp("compare")
    for seed in (0, 1):
        train(TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=2, seed=seed), root / f"s{seed}",
              echo=lambda s: None)
        evaluate_run(root / f"s{seed}", iw_k=5, judge=False)
    return root / "s0", root / "s1"


def _per_image(run):
    return np.array(json.loads((run / "eval.json").read_text())["log_likelihood_per_image"])


def test_the_difference_and_its_paired_error_are_those_of_the_per_image_estimates(two_runs):
    a, b = two_runs
    c = compare_runs(a, b)
    x, y = _per_image(a), _per_image(b)
    assert len(x) == len(y) == 500
    assert math.isclose(c.difference, y.mean() - x.mean(), abs_tol=1e-9)
    assert math.isclose(c.paired_stderr, np.std(y - x, ddof=1) / math.sqrt(500), rel_tol=1e-9)
    assert math.isclose(c.unpaired_stderr, math.hypot(np.std(x, ddof=1), np.std(y, ddof=1)) / math.sqrt(500),
                        rel_tol=1e-6)
    assert c.paired_stderr < c.unpaired_stderr  # the images' shared difficulty, counted once
    assert c.verdict == ("within noise" if abs(c.difference) <= 2 * c.paired_stderr
                         else "ahead" if c.difference > 0 else "behind")
    itself = compare_runs(a, a)
    assert (itself.difference, itself.paired_stderr, itself.verdict) == (0.0, 0.0, "within noise")


@pytest.mark.parametrize("shift, verdict", [(1.0, "ahead"), (-1.0, "behind"), ("alternate", "within noise")])
def test_each_verdict_is_printed_for_the_run_it_is_about(two_runs, tmp_path, capsys, shift, verdict):
    a = two_runs[0]
    b = shutil.copytree(a, tmp_path / "b")  # A's weights, with eval.json's estimates moved by a known amount
    scores = json.loads((b / "eval.json").read_text())
    x = np.array(scores["log_likelihood_per_image"])
    moved = x + (np.where(np.arange(len(x)) % 2, 0.1, -0.1) if shift == "alternate" else shift)
    (b / "eval.json").write_text(json.dumps({**scores, "log_likelihood_per_image": moved.tolist(),
                                             "log_likelihood": float(moved.mean())}))
    c = compare_runs(a, b)
    expected = 0.0 if shift == "alternate" else shift
    assert c.difference == pytest.approx(expected, abs=1e-9) and c.verdict == verdict
    if shift != "alternate":
        assert c.paired_stderr == pytest.approx(0, abs=1e-9)  # every image moved alike: no spread at all
    assert main(["compare", str(a), str(b)]) == 0
    said = capsys.readouterr().out.splitlines()[4]
    assert said == {"ahead": f"  {b} is ahead of {a} by more than two standard errors",
                    "behind": f"  {b} is behind {a} by more than two standard errors",
                    "within noise": "  within noise: the difference is less than two standard errors"}[verdict]


def test_compare_prints_both_runs_the_difference_and_what_it_means(two_runs, capsys):
    a, b = two_runs
    c = compare_runs(a, b)
    assert main(["compare", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "log p(x), importance-weighted, on the same 500 test images (nats per image):"
    assert lines[1].startswith(f"  A  {a}") and lines[1].endswith("   (K=5, epoch 2)")
    assert f"{c.difference:+8.2f} ± {c.paired_stderr:.2f}   paired: the spread of the 500 per-image differences " \
           f"(± {c.unpaired_stderr:.2f} as if the runs' errors were independent)" in lines[3]
    assert lines[4] in (f"  {b} is ahead of {a} by more than two standard errors",
                        f"  {b} is behind {a} by more than two standard errors",
                        "  within noise: the difference is less than two standard errors")
    assert main(["compare", str(a), str(b), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["difference"], printed["paired_stderr"], printed["verdict"]) == \
        (c.difference, c.paired_stderr, c.verdict)


def test_runs_that_cannot_be_compared_image_by_image_say_what_to_run(two_runs, tmp_path, capsys):
    a, b = two_runs
    old = shutil.copytree(b, tmp_path / "old")
    scores = json.loads((old / "eval.json").read_text())
    del scores["log_likelihood_per_image"]  # as vaelab wrote it before it kept them
    (old / "eval.json").write_text(json.dumps(scores))
    with pytest.raises(VaelabError, match=rf"{old}/eval.json predates per-image estimates; score it again .*"
                                          rf"vaelab eval {old} --iw-k 5$"):
        compare_runs(a, old)
    (old / "eval.json").write_text(json.dumps({**scores, "log_likelihood_per_image": _per_image(b).tolist(),
                                               "data_sha256": {"t10k-images-idx3-ubyte": "0" * 64}}))
    with pytest.raises(VaelabError, match="scored on different test images, so they cannot be compared image by"):
        compare_runs(a, old)
    (old / "eval.json").unlink()
    assert main(["compare", str(a), str(old)]) == 2
    assert capsys.readouterr().err == (f"vaelab: error: {old}/eval.json does not exist; score the run first: "
                                       f"vaelab eval {old} --iw-k 5\n")  # as the other run was: they then compare
    with RunDir.existing(old):  # as `vaelab train --resume` holds it: the way out is a copy
        assert main(["compare", str(a), str(old)]) == 2
    if os.path.exists("/proc/locks"):
        assert capsys.readouterr().err == (f"vaelab: error: {old}/eval.json does not exist; it is still training, "
                                           f"so score a copy: vaelab copy {old} --out DIR, then vaelab eval DIR "
                                           "--iw-k 5\n")
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no run at" in capsys.readouterr().err


def test_runs_on_differently_binarized_images_are_refused_and_other_draws_are_said(two_runs, small_mnist,
                                                                                    tmp_path, capsys):
    dynamic = []
    for seed in (0, 1):  # test pixels drawn once from each run's seed
        train(TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=1, seed=seed, binarization="dynamic"),
              tmp_path / f"d{seed}", echo=lambda s: None)
        evaluate_run(tmp_path / f"d{seed}", iw_k=5, judge=False)
        dynamic.append(tmp_path / f"d{seed}")
    threshold = two_runs[0]
    with pytest.raises(VaelabError, match=rf"^{threshold} was trained and scored on threshold-binarized images and "
                                          rf"{dynamic[0]} on dynamic-binarized ones: their log-likelihoods are of "
                                          "different data and cannot be compared; compare runs trained with the "
                                          "same --binarization$"):
        compare_runs(threshold, dynamic[0])
    assert compare_runs(dynamic[0], dynamic[0]).different_draws is None
    assert compare_runs(threshold, two_runs[1]).different_draws is None  # fixed pixels: no draw at all
    c = compare_runs(dynamic[0], dynamic[1])
    assert c.different_draws == ("seed 0 on cpu", "seed 1 on cpu")
    assert math.isclose(c.paired_stderr, np.std(_per_image(dynamic[1]) - _per_image(dynamic[0]), ddof=1)
                        / math.sqrt(500), rel_tol=1e-9)
    assert main(["compare", str(dynamic[0]), str(dynamic[1])]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  note: the test images' pixels are different random draws (dynamic binarization: seed 0 on cpu and "
        "seed 1 on cpu); each image's two estimates are still paired, but part of the spread is the draws'")
    assert main(["compare", str(dynamic[0]), str(dynamic[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["different_draws"] == ["seed 0 on cpu", "seed 1 on cpu"]
    # eval.json says how the pixels it scored were drawn; that, not training's record, is what was compared
    assert [json.loads((run / "eval.json").read_text())["test_pixels"] for run in (*dynamic, threshold)] == [
        "seed 0 on cpu", "seed 1 on cpu", "threshold"]
    scored = json.loads((dynamic[1] / "eval.json").read_text())
    (dynamic[1] / "eval.json").write_text(json.dumps({**scored, "test_pixels": "seed 0 on cuda"}))  # a GPU's draw
    assert compare_runs(dynamic[0], dynamic[1]).different_draws == ("seed 0 on cpu", "seed 0 on cuda")
    del scored["test_pixels"]  # as written before eval.json kept it: training's record
    (dynamic[1] / "eval.json").write_text(json.dumps(scored))
    assert compare_runs(dynamic[0], dynamic[1]).different_draws == ("seed 0 on cpu", "seed 1 on cpu")
    # a run from before training recorded its draw: drawn from the scoring seed, on the scoring device
    assert same_draw("seed 0 on cpu", "seed 0 (the scoring seed)") and same_draw("threshold", "threshold")
    assert not same_draw("seed 0 on cpu", "seed 1 (the scoring seed)") and not same_draw("seed 0 on cpu",
                                                                                          "seed 0 on cuda")
    with pytest.raises(VaelabError, match="test_pixels must be null or a string"):
        (dynamic[1] / "eval.json").write_text(json.dumps({**scored, "test_pixels": 5}))
        compare_runs(dynamic[0], dynamic[1])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_runs_of_two_named_datasets_are_refused_by_name(tmp_path):
    runs = []
    for dataset in ("mnist", "fashion-mnist"):
        runs.append(tmp_path / dataset)
        train(TrainConfig(dataset=dataset, latent_size=2, hidden_size=8, epochs=1), runs[-1], echo=lambda s: None)
    with pytest.raises(VaelabError, match=rf"^{runs[0]} was trained on MNIST and {runs[1]} on Fashion-MNIST: their "
                                          "log-likelihoods are of different data and cannot be compared; compare "
                                          "runs of one dataset$"):
        compare_runs(*runs)  # said before anything about their scores (neither is scored)

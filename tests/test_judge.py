"""The judge: the Fréchet distance is exact, and the scores tell real images from shuffled labels and noise."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from vaelab.data import binarize_threshold, load_split
from vaelab.errors import VaelabError
from vaelab.judge import (
    JudgeArgs,
    accuracy,
    classify,
    feature_statistics,
    frechet_distance,
    load_judge,
    per_class_accuracy,
    save_judge,
    shipped_path,
    train_judge,
)


# --- the metric -------------------------------------------------------------------------
def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 32)) @ np.random.default_rng(1).normal(size=(32, 32))
    mu, cov = feature_statistics(features)
    assert abs(frechet_distance(mu, cov, mu, cov)) < 1e-6


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # 5 + (1 + 1 + 6.25)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_general_gaussians_matches_sqrtm():
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov1, cov2 = m1 @ m1.T, m2 @ m2.T  # not commuting: the square root of the product is not the product of roots
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * scipy.linalg.sqrtm(cov1 @ cov2).real)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --- a tiny judge, trained on a small MNIST slice ---------------------------------------
@pytest.fixture(scope="module")
def trained_judge(small_mnist):
    return train_judge("folder", data_dir=str(small_mnist), epochs=4, batch_size=32, lr=3e-3, seed=0,
                       args=JudgeArgs(channels=(8, 16), features=64), echo=lambda s: None)  # small: seconds


@pytest.fixture(scope="module")
def tiny_judge(trained_judge, tmp_path_factory):
    path = save_judge(trained_judge, tmp_path_factory.mktemp("judge") / "tiny.safetensors")
    return path, load_judge(path)


def _scores(judge, x, labels, reference):
    predicted, features = classify(judge.model, x)
    return accuracy(predicted, labels), frechet_distance(*feature_statistics(features), *reference)


def test_real_images_score_like_real_ones_and_fakes_do_not(tiny_judge, small_mnist):
    _, judge = tiny_judge
    test, train = (load_split(s, small_mnist) for s in ("test", "train"))
    x_test = binarize_threshold(test.images)
    _, test_features = classify(judge.model, x_test)
    reference = feature_statistics(test_features)
    recorded = judge.info["test_accuracy"]
    assert recorded > 0.7  # 1,000 images, 4 epochs: a judge, if a modest one
    # Real training images, as if generated, with their true labels: accuracy near the judge's, FID = the floor.
    x_real = binarize_threshold(train.images[:500])
    real_acc, floor = _scores(judge, x_real, train.labels[:500], reference)
    assert real_acc >= recorded - 0.05
    assert _scores(judge, x_test, test.labels, reference) == (pytest.approx(recorded), pytest.approx(0, abs=1e-6))
    # The same images with shuffled labels: near chance (10 classes).
    shuffled = train.labels[:500][torch.randperm(500, generator=torch.Generator().manual_seed(0))]
    assert accuracy(classify(judge.model, x_real)[0], shuffled) < 0.2
    # Uniform noise: misclassified, and far from the test images.
    noise = (torch.rand(500, 784, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    noise_acc, noise_fid = _scores(judge, noise, train.labels[:500], reference)
    assert noise_acc < 0.2 and noise_fid > 10 * floor + 1


def test_per_class_accuracy():
    predicted, labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    assert per_class_accuracy(predicted, labels) == {"0": 1.0, "1": 1.0, "2": 0.5}


def test_a_judge_file_round_trips(trained_judge, tiny_judge, small_mnist):
    path, again = tiny_judge  # saved, then loaded: the trained judge, tensor for tensor
    trained, loaded = trained_judge.model.state_dict(), again.model.state_dict()
    assert list(trained) == list(loaded) and all(torch.equal(trained[k], loaded[k]) for k in trained)
    x = binarize_threshold(load_split("test", small_mnist).images[:50])
    for a, b in zip(classify(trained_judge.model, x), classify(again.model, x), strict=True):
        assert torch.equal(a, b)
    assert again.info["test_accuracy"] == trained_judge.info["test_accuracy"]
    assert again.info["dataset"] == "folder" and set(again.info["data_sha256"]) == {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert len(again.sha256) == 64


@pytest.mark.parametrize("damage", ["truncate", "flip", "metadata", "header cut"])
def test_a_damaged_judge_file_is_one_line(tiny_judge, tmp_path, damage):
    path, _ = tiny_judge
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[-100] ^= 0xFF  # a weight's byte: the checksum no longer matches
    elif damage == "header cut":
        raw = raw[:8 + raw[8:].index(b"vaelab-judge/") + 20]  # cut off inside its header, past the format
    else:
        raw = raw.replace(b'"format":"vaelab-judge/1"', b'"format":"vaelab-judge/9"')
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(VaelabError) as info:
        load_judge(bad)
    message = str(info.value)
    assert message.startswith(f"judge file {bad} is damaged") and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("what", ["garbage", "a run's checkpoint", "a run's config", "empty"])
def test_a_file_that_is_no_judge_is_said_to_be_none_not_a_damaged_one(trained_run, tmp_path, what):
    path = {"garbage": tmp_path / "x.safetensors", "a run's checkpoint": trained_run / "checkpoint.safetensors",
            "a run's config": trained_run / "config.json", "empty": tmp_path / "empty"}[what]
    if what == "garbage":
        path.write_bytes(b"not a judge at all")
    elif what == "empty":
        path.write_bytes(b"")
    with pytest.raises(VaelabError) as info:
        load_judge(path)
    assert str(info.value) == (f"{path} is not a vaelab judge file (its header names no judge format); give --judge a "
                               "file that `vaelab judge train --out FILE` wrote, or leave --judge out for the judge "
                               "shipped for the run's dataset")
    with pytest.raises(VaelabError, match=f"^judge file {path} is damaged .* reinstall vaelab for a shipped one$"):
        load_judge(path, name="mnist")  # the shipped one, so broken: nothing the user gave, so reinstall


def test_a_missing_judge_file_says_how_to_make_one(tmp_path):
    with pytest.raises(VaelabError, match="does not exist; train one with `vaelab judge train"):
        load_judge(tmp_path / "none.safetensors")


# --- the shipped judges -----------------------------------------------------------------
def test_the_shipped_mnist_judge_is_accurate_as_recorded_and_measured():
    path = shipped_path("mnist")
    assert path is not None and path.stat().st_size < 2_000_000
    judge = load_judge(path, name="mnist")
    assert judge.info["test_accuracy"] >= 0.990 and judge.info["command"].startswith("vaelab judge train")
    test = load_split("test")
    measured = accuracy(classify(judge.model, binarize_threshold(test.images))[0], test.labels)
    assert measured >= 0.990 and measured == pytest.approx(judge.info["test_accuracy"], abs=0.002)
    assert shipped_path("kmnist") is None and shipped_path("folder") is None


# --- in vaelab eval ---------------------------------------------------------------------
def test_eval_json_gains_the_judge_and_old_files_still_read(trained_run, tiny_judge, tmp_path, capsys):
    from vaelab.checkpoint import load_run
    from vaelab.cli import main
    from vaelab.evalfile import read_eval
    from vaelab.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = evaluate_run(run, iw_k=0, judge=tiny_judge[0], judge_per_class=50)
    judged = result.judge
    assert judged["n_generated"] == 500 and set(judged["per_class"]) == {str(d) for d in range(10)}
    assert judged["sha256"] == tiny_judge[1].sha256
    # the numbers, each against what it claims to be: the judge's accuracy on the same 500 test images it recorded,
    # the overall accuracy as the mean of the per-class ones (50 images each), and generated images further from
    # the test set than real training images are
    assert judged["test_accuracy"] == pytest.approx(tiny_judge[1].info["test_accuracy"])
    assert judged["class_accuracy"] == pytest.approx(sum(judged["per_class"].values()) / 10)
    assert all(50 * v == round(50 * v) for v in judged["per_class"].values())  # counts of 50 images each
    assert judged["fid"] > judged["fid_floor"] > 0  # (this 3-epoch model's blobs all look like one class to it)
    # the floor, recomputed: test images against as many training images, drawn by the eval's seed (0)
    test, train = (load_split(s, load_run(run).config.data_dir) for s in ("test", "train"))
    pick = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:500]
    features = [classify(tiny_judge[1].model, binarize_threshold(images))[1] for images in (test.images,
                                                                                             train.images[pick])]
    assert judged["fid_floor"] == pytest.approx(frechet_distance(*feature_statistics(features[0]),
                                                                 *feature_statistics(features[1])), rel=1e-9)
    saved = json.loads((run / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved["judge"] == judged and read_eval(load_run(run)).judge == judged
    from vaelab.report import _render  # the report's scores area shows them, with what they mean

    page = _render(load_run(run), result, [])
    assert f"{100 * judged['class_accuracy']:.1f}%" in page and f"floor test vs train {judged['fid_floor']:.1f}" in page
    assert "The judge, an independent classifier" in page
    # --no-judge keeps the earlier judge's scores of the same weights in eval.json.
    evaluate_run(run, iw_k=0, judge=False)
    assert json.loads((run / "eval.json").read_text())["judge"] == judged
    # eval.json from before the judge: no field at all.
    del saved["judge"]
    (run / "eval.json").write_text(json.dumps(saved))
    assert read_eval(load_run(run), strict=True).judge is None
    # A folder run has no shipped judge: eval says so in one line.
    assert main(["eval", str(run), "--iw-k", "0"]) == 0
    out = capsys.readouterr().out
    data_dir = load_run(run).config.data_dir  # the run's own folder, so the command runs as printed
    assert (f"  judge: none shipped for folder; train one with `vaelab judge train --dataset folder --data-dir "
            f"{data_dir} --out FILE` and pass --judge FILE\n") in out


def test_a_judge_for_other_images_is_refused(trained_run, tmp_path):
    from vaelab.evaluate import evaluate_run
    from vaelab.judge import Judge, LoadedJudge

    small = LoadedJudge(model=Judge(JudgeArgs(image_shape=(14, 14))), info={"test_accuracy": 0.5}, sha256="",
                        name="small")
    path = save_judge(small, tmp_path / "small.safetensors")
    with pytest.raises(VaelabError, match=r"classifies 14 x 14 images into 10 classes, but .* 28 x 28"):
        evaluate_run(trained_run, iw_k=0, judge=path, save=False)


def test_a_judge_of_other_classes_is_refused(trained_run):
    from vaelab.evaluate import evaluate_run

    fashion = shipped_path("fashion-mnist")  # 28 x 28 images of 10 classes, like MNIST's, but not digits
    with pytest.raises(VaelabError, match=rf"^judge {fashion} \(fashion-mnist, test accuracy 88.84%\) tells apart "
                                          rf"T-shirt/top, Trouser, Pullover, \.\.\., but {trained_run} makes images "
                                          r"of 0, 1, 2, \.\.\., so its verdicts would mean nothing; give one trained "
                                          r"on the run's data with --judge \(`vaelab judge train`\), or add "
                                          r"--no-judge$"):
        evaluate_run(trained_run, iw_k=0, judge=fashion, save=False)


def test_a_judge_of_other_images_with_the_same_class_names_is_refused(trained_run):
    from vaelab.checkpoint import load_run
    from vaelab.evaluate import evaluate_run

    mnist = shipped_path("mnist")  # classes 0..9, as the test run's numbered folder classes are, on other files
    theirs, ours = load_judge(mnist).info["data_sha256"], load_run(trained_run).data["sha256"]
    first = sorted(theirs)[0]
    with pytest.raises(VaelabError, match=rf"^judge {mnist} \(mnist, test accuracy 99.21%\) was trained on other "
                                          rf"images than {trained_run} was \({first}: {theirs[first][:12]}…, the "
                                          rf"run's {ours[first][:12]}…\), so it is not a judge of this run's images"):
        evaluate_run(trained_run, iw_k=0, judge=mnist, save=False)


def test_judge_train_command(small_mnist, tmp_path, capsys):
    from vaelab.cli import main

    out = tmp_path / "judges" / "j.safetensors"
    assert main(["judge", "train", "--data-dir", str(small_mnist), "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch  1" in printed and f"judge written to {out}: test accuracy" in printed
    info = load_judge(out).info
    assert info["command"] == (f"vaelab judge train --dataset folder --data-dir {small_mnist} --out {out} "
                               "--epochs 1 --seed 0 --device auto")


def test_classify_uses_the_cores_others_leave_free_and_gives_the_same_numbers(tiny_judge, monkeypatch,
                                                                              threads_asked):
    """The judge scores 30,000 images an eval: like the IW estimate, it adapts its threads to the load,
    which must not change a bit of its features."""
    _, judge = tiny_judge
    x = binarize_threshold(load_split("test").images[:600])
    seen = threads_asked
    before = torch.get_num_threads()
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("VAELAB_THREADS", threads)
        results[threads] = classify(judge.model, x, batch_size=200)
        assert seen[-3:] == [int(threads)] * 3  # asked before each of the 3 batches, as VAELAB_THREADS pins
    assert torch.get_num_threads() == before
    assert torch.equal(results["1"][0], results["2"][0]) and torch.equal(results["1"][1], results["2"][1])


def test_generated_images_are_cut_as_the_real_ones_the_judge_compares_them_with():
    from vaelab.evaluate import ink

    grey = torch.arange(256, dtype=torch.uint8)[None]  # every byte a real pixel can hold
    real = binarize_threshold(grey)  # the judge's images: ink from byte 73
    # a model of dynamic draws learns the grey levels b / 255: its means cut where the real bytes are
    means = torch.sigmoid(torch.logit(grey.double() / 255)).float()
    assert torch.equal(ink(means, "dynamic").float(), real)
    # a model of black-and-white pixels: the likelier value, ink above 0.5 (as before: 0.5 itself is blank)
    assert ink(torch.tensor([0.4999, 0.5, 0.5001]), "threshold").tolist() == [False, False, True]
    assert not torch.equal(ink(means, "threshold").float(), real)  # bytes 73-127 would come out blank


def test_a_dynamic_runs_generated_images_are_cut_at_the_real_images_cut(small_mnist, tiny_judge, tmp_path,
                                                                       monkeypatch):
    from vaelab import evaluate
    from vaelab.config import TrainConfig
    from vaelab.training import train

    run = train(TrainConfig(data_dir=str(small_mnist), latent_size=4, hidden_size=16, epochs=1,
                            binarization="dynamic"), tmp_path / "run", echo=lambda s: None)
    seen = []
    real = evaluate.ink
    monkeypatch.setattr(evaluate, "ink", lambda means, binarization: seen.append((len(means), binarization))
                        or real(means, binarization))
    judged = evaluate.evaluate_run(run, iw_k=0, judge=tiny_judge[0], judge_per_class=20).judge
    assert seen == [(200, "dynamic")] and judged["n_generated"] == 200


def test_a_generator_of_real_images_of_each_class_scores_as_those_images_do(trained_run, tiny_judge, monkeypatch):
    """A stand-in decoder that turns the code for class c into real training images of class c: the judge's
    class accuracy must be its accuracy on exactly those images, class by class."""
    from vaelab import evaluate
    from vaelab.checkpoint import load_run
    from vaelab.explore import encode_subset

    run, judge = load_run(trained_run), tiny_judge[1]
    train = load_split("train", run.config.data_dir)
    real = binarize_threshold(train.images)
    by_class = {c: real[train.labels == c] for c in range(10)}
    per_class = 20

    def sample_class(stats, label, n, generator):  # column 0: the class, column 1: which of its images
        return torch.stack([torch.full((n,), float(label)), torch.arange(n, dtype=torch.float32)], 1)

    def decode(z):  # logits whose means are the real images' pixels, black or white
        images = torch.stack([by_class[int(c)][int(i)] for c, i in z.tolist()])
        return torch.where(images > 0, 20.0, -20.0)

    monkeypatch.setattr(evaluate, "sample_class", sample_class)
    monkeypatch.setattr(run.model, "decode", decode)
    stats = encode_subset(run, n=300, seed=0).stats
    test = load_split("test", run.config.data_dir)
    judged = evaluate.judge_run(run, judge, stats, test, per_class=per_class)
    shown = torch.cat([by_class[int(c)][:per_class] for c in stats.classes])
    labels = stats.classes.repeat_interleave(per_class)
    predicted, features = classify(judge.model, shown)
    assert judged["class_accuracy"] == pytest.approx(accuracy(predicted, labels))
    assert judged["per_class"] == pytest.approx(per_class_accuracy(predicted, labels))
    assert judged["class_accuracy"] > 0.5  # real images of the class the code was made for: mostly right
    _, test_features = classify(judge.model, binarize_threshold(test.images))
    assert judged["fid"] == pytest.approx(frechet_distance(*feature_statistics(features),
                                                           *feature_statistics(test_features)), rel=1e-9)

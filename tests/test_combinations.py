"""Every architecture x objective x dataset trains, evaluates and reports, on a small slice of data.

The named datasets are read through their real code paths (found in the download
cache, checked against their spec's sizes and SHA-256, named by their spec's
classes); only the spec's checksums are swapped for those of the slice, which is
the first images of the real set where this machine has it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import write_idx
from vaelab import catalog
from vaelab.config import TrainConfig
from vaelab.data import load_split
from vaelab.figures import FIGURES

N_TRAIN, N_TEST = 240, 60
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _images(dataset: str) -> dict[str, np.ndarray]:
    """The slice's four arrays: the real set's first images where it is on this machine, else MNIST's, altered."""
    source = None
    if dataset == "fashion-mnist" and DEBIAN_FASHION.is_dir():
        source = str(DEBIAN_FASHION)
    train, test = (load_split(split, source, dataset="fashion-mnist" if source else "mnist")
                   for split in ("train", "test"))
    images = [train.images[:N_TRAIN].numpy(), test.images[:N_TEST].numpy()]
    if source is None and dataset != "mnist":  # a set of other images, not MNIST's digits again
        images = [255 - a.transpose(0, 2, 1) for a in images]
    labels = [train.labels[:N_TRAIN].numpy(), test.labels[:N_TEST].numpy()]
    return dict(zip(FILES, (images[0], labels[0], images[1], labels[1]), strict=True))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A slice of each dataset in a download cache, and the specs that accept exactly those files."""
    cache = tmp_path_factory.mktemp("cache")
    specs = {}
    for name in catalog.DATASETS:
        folder = cache / name
        folder.mkdir()
        sums = {}
        for file, array in _images(name).items():
            path = write_idx(folder / file, array.astype(np.uint8), compress=False)
            data = path.read_bytes()
            sums[file] = catalog.FileSum(len(data), hashlib.sha256(data).hexdigest())
        specs[name] = dataclasses.replace(catalog.DATASETS[name], files=sums, search=(), bundled=False, mirrors=())
    folder = cache / "mine"
    folder.mkdir()
    for file, array in _images("mnist").items():
        write_idx(folder / file, array.astype(np.uint8))
    (folder / catalog.CLASS_FILE).write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six",
                                                         "seven", "eight", "nine"]) + "\n")
    return cache, specs


@pytest.fixture
def sliced(datasets, monkeypatch):
    cache, specs = datasets
    monkeypatch.setenv("VAELAB_DATA", str(cache))
    for name, spec in specs.items():
        monkeypatch.setitem(catalog.DATASETS, name, spec)
    return cache


CLASS_SEEN = {"mnist": "Mixing digits", "fashion-mnist": "Trouser", "kmnist": "tsu", "folder": "three"}


DATASETS = ["mnist", "fashion-mnist", "kmnist", "folder"]
COMBINATIONS = [*itertools.product(["mlp", "conv"], ["elbo", "beta", "iwae"], DATASETS),
                *itertools.product(["mlp2"], ["elbo", "beta", "iwae"], DATASETS[:2])]  # an mlp's data paths


@pytest.mark.parametrize("model, objective, dataset", COMBINATIONS)
def test_every_combination_trains_evaluates_and_reports(model, objective, dataset, sliced, tmp_path):
    from vaelab.evaluate import evaluate_run
    from vaelab.report import write_report
    from vaelab.training import train

    options = {"elbo": {"samples": 2}, "beta": {"beta": 0.5}, "iwae": {"samples": 3}}[objective]
    config = TrainConfig(model=model, objective=objective, dataset=dataset, latent_size=4, hidden_size=[24],
                         channels=(4, 8) if model == "conv" else (32, 64), epochs=2, batch_size=60,
                         validation=40, device="cpu", data_dir=str(sliced / "mine") if dataset == "folder" else None,
                         **options)
    lines = []
    run = train(config, tmp_path / "run", echo=lines.append)
    assert lines[0].startswith(f"training {model} (")
    assert run.model.name == model and run.model.image_shape == (28, 28)
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    for row in run.metrics:
        assert all(math.isfinite(row[k]) for k in ("lower_bound", "test_elbo", "valid_elbo"))
        assert (row.get("objective") is not None) == config.logs_objective
    assert run.data["n_train"] == N_TRAIN - 40 and run.data["n_valid"] == 40 and run.data["dataset"] == dataset

    scores = evaluate_run(tmp_path / "run", iw_k=4, device="cpu")
    assert scores.n_images == N_TEST and math.isfinite(scores.elbo) and scores.log_likelihood >= scores.elbo - 1e-3

    page = write_report(tmp_path / "run", n_stats=N_TRAIN, embed_method="pca", iw_k=4, device="cpu",
                        echo=lambda s: None).read_text()
    assert CLASS_SEEN[dataset] in page
    drawn = {p.stem.split("-")[0] for p in (tmp_path / "run" / "figures").glob("*.png")}
    assert {f.name for f in FIGURES} - {"interpolate"} <= drawn

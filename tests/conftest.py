"""Shared fixtures: a small real MNIST (the first images of each bundled split)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from vaelab.data import load_split


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write `array` (uint8) as an IDX file, gzip-compressed unless told otherwise."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    """A small MNIST-format folder holding the first images of the real splits."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        s = load_split(split)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", s.images[:n].numpy())
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", s.labels[:n].numpy().astype(np.uint8))
    return folder


@pytest.fixture
def one_openmp_thread():
    """t-SNE's Barnes-Hut gradient runs on OpenMP threads; on a 2-core machine that other
    processes keep busy, their barriers made 150 points take 30 s instead of 0.3 s."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


@pytest.fixture
def threads_asked(monkeypatch) -> list[int]:
    """What each ThreadTuner.adjust() call set, in order: the threads for the next stretch of work."""
    from vaelab import resources

    seen = []
    real_adjust = resources.ThreadTuner.adjust

    def adjust(self):
        seen.append(real_adjust(self))
        return seen[-1]

    monkeypatch.setattr(resources.ThreadTuner, "adjust", adjust)
    return seen


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory) -> Path:
    """1,000 training and 500 test images of real MNIST, in the flat IDX layout."""
    return write_mnist(tmp_path_factory.mktemp("small_mnist"), 1000, 500)


@pytest.fixture(scope="session")
def trained_run(small_mnist, tmp_path_factory) -> Path:
    """A small run (latent 8, 3 epochs on the small MNIST), scored with K=10."""
    from vaelab.config import TrainConfig
    from vaelab.evaluate import evaluate_run
    from vaelab.training import train

    path = tmp_path_factory.mktemp("runs") / "small"
    train(TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=3), path, echo=lambda s: None)
    evaluate_run(path, iw_k=10)
    return path

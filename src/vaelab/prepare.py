"""The images as the model sees them: a run's data loaded, split and binarized, one way for everyone.

Training, scoring and the figures all read a run's images through here, so the
test and validation pixels of a run with dynamic binarization are the same
draws wherever they are used: drawn once from the run's seed on its device,
and recorded in the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vaelab.config import TrainConfig
from vaelab.data import (
    THRESHOLD_BYTE,
    DataMismatchWarning,
    absolute_data_dir,
    binarize,
    binarize_dynamic,
    binarize_threshold,
    bundled_dir,
    find_dataset,
    grey_levels,
    load_split,
)
from vaelab.device import make_generator
from vaelab.errors import VaelabError
from vaelab.files import display

if TYPE_CHECKING:  # pragma: no cover
    from vaelab.checkpoint import Run

Echo = Callable[[str], Any]


@dataclass
class TrainData:
    """The training, validation and test sets, on the device, as the model sees them."""

    train: torch.Tensor  # (N, D): binary images, or grey levels for dynamic binarization
    test: torch.Tensor  # (M, D): binary images, fixed
    dynamic: bool  # redraw training pixels from the grey levels every batch
    info: dict[str, Any]  # provenance, saved in the checkpoint
    valid: torch.Tensor | None = None  # (V, D): training images held out, binary and fixed; None: no validation
    pixel_mean: torch.Tensor | None = None  # (D,) float64 on the CPU: the training images' mean pixel, as trained on

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self.train.index_select(0, index)  # (B, D); faster than x[index] on CPU
        return binarize_dynamic(x, generator) if self.dynamic else x


def load_data(config: TrainConfig, device: torch.device, echo: Echo = print) -> TrainData:
    """Read (and if asked, download) the dataset, hold out the validation images, binarize, move to `device`.

    The test and validation images are binarized once, with generators seeded from
    the run's seed (recorded in the run), so every epoch and every later score see
    the same pixels; dynamic binarization redraws only the training images.
    """
    folder = find_dataset(config.dataset, config.data_dir, download=config.download, echo=echo)
    train, test = (load_split(name, folder, dataset=config.dataset, class_names=config.class_names)
                   for name in ("train", "test"))
    kept, held_out = split_validation(len(train.images), config.validation, config.seed,
                                      last=config.validation_split == "end")
    dynamic = config.binarization == "dynamic"
    images = train.images.to(device)
    x_train = images.index_select(0, kept.to(device)) if held_out is not None else images
    x_train = grey_levels(x_train) if dynamic else binarize_threshold(x_train)
    pixel_mean = None
    if config.output_bias == "data_mean":  # only then: the sums pass over every training pixel
        pixel_mean = mean_pixel(train.images.index_select(0, kept) if held_out is not None else train.images,
                                dynamic)
    x_test = binarize(test.images, config.binarization, make_generator(device, config.seed))
    x_valid = None
    if held_out is not None:
        x_valid = binarize(images.index_select(0, held_out.to(device)), config.binarization,
                           make_generator(device, config.seed + VALIDATION_STREAM))
    info = {
        "source": "bundled MNIST" if folder == bundled_dir() else absolute_data_dir(folder),
        "dataset": config.dataset,
        "classes": train.classes.to_dict(),
        "image_shape": list(train.images.shape[1:]),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "n_valid": 0 if x_valid is None else len(x_valid),
        "binarization": config.binarization,
        "threshold_byte": THRESHOLD_BYTE,
        "sha256": {**train.files, **test.files},
    }
    if dynamic:  # the fixed draws of the test (and validation) pixels: generator, seed and device
        info["test_binarization"] = {"seed": config.seed, "device": device.type}
    if x_valid is not None:
        info["validation_split"] = {"seed": config.seed, "held_out": len(x_valid), "from": len(train.images)}
    if held_out is not None and config.validation_split == "end":
        info["validation_split"]["last"] = True
    return TrainData(train=x_train, test=x_test, dynamic=dynamic, info=info, valid=x_valid, pixel_mean=pixel_mean)


def mean_pixel(images: torch.Tensor, dynamic: bool) -> torch.Tensor:
    """The mean of each pixel over uint8 images (N, ...), as the model sees them: grey levels b / 255 for
    dynamic binarization, else the black-and-white threshold images. (D,) float64, exact sums."""
    flat = images.reshape(len(images), -1).cpu()
    if dynamic:
        return flat.sum(0, dtype=torch.int64).double() / (255.0 * len(flat))
    return (flat >= THRESHOLD_BYTE).sum(0, dtype=torch.int64).double() / len(flat)


VALIDATION_STREAM = 0x5A11D  # offsets the seed of the validation pixels' draw from the test set's


def split_validation(n: int, held_out: int, seed: int, *,
                     last: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices of the training images kept and of the `held_out` ones (None when none), chosen by `seed`, or
    with `last` the file's last `held_out` images (Burda et al. 2015 trained on MNIST's first 59,600).

    A CPU generator of its own draws them, so the choice is the same on every device
    and the training generator's stream (shuffling, noise) is untouched. Kept images
    stay in their original order.
    """
    if held_out == 0:
        return torch.arange(n), None
    if held_out >= n:
        raise VaelabError(f"--validation {held_out} would hold out all {n} training images; give fewer than {n}")
    if last:
        return torch.arange(n - held_out), torch.arange(n - held_out, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[held_out:].sort().values, order[:held_out].sort().values


def trained_on(run: Run, n: int) -> torch.Tensor | None:
    """The indices of the training images `run` trained on, of the `n` in its training file, when it held
    some out for validation (as its record says); None when it trained on all of them."""
    record = run.data.get("validation_split")
    if not isinstance(record, dict) or not 0 < int(record.get("held_out", 0)) < n:
        return None
    kept, _ = split_validation(n, int(record["held_out"]), int(record.get("seed", run.config.seed)),
                               last=bool(record.get("last", False)))
    return kept


def test_pixels_draw(run: Run, device: torch.device, seed: int) -> tuple[torch.device, int]:
    """Where, and from which seed, the test images' pixels are drawn to score `run` on `device` with `seed`:
    as the run saw them in training.

    With dynamic binarization, training drew the test pixels once, from the run's
    seed on its device, and recorded both; scoring draws the same pixels again. Runs
    from before that was recorded drew them from the scoring seed, and still do.
    A run that drew them on a GPU not here has them drawn again on `device` (a warning says so).
    """
    recorded = run.data.get("test_binarization")
    if run.config.binarization != "dynamic" or not isinstance(recorded, dict):
        return device, seed
    where = torch.device(recorded.get("device", device.type))
    if where.type != device.type and where.type != "cpu":
        warnings.warn(f"{display(run.path)} drew its test pixels on {where.type}, which is not used here; the "
                      f"test images are drawn again on {device.type}, so scores differ slightly from training's",
                      DataMismatchWarning, stacklevel=4)
        where = device
    return where, int(recorded.get("seed", run.config.seed))


def test_pixels_generator(run: Run, device: torch.device, seed: int) -> torch.Generator:
    """The generator that binarizes the test images as the run saw them in training (`test_pixels_draw`)."""
    where, drawn_from = test_pixels_draw(run, device, seed)
    return make_generator(where, drawn_from)


def test_pixels_words(run: Run, device: torch.device, seed: int) -> str:
    """How the test images scored on `device` with `seed` are made black and white, as eval.json records it:
    'threshold', or the dynamic draw's 'seed S on DEVICE'."""
    if run.config.binarization != "dynamic":
        return run.config.binarization
    with warnings.catch_warnings():  # said once, when the pixels are drawn
        warnings.simplefilter("ignore", DataMismatchWarning)
        where, drawn_from = test_pixels_draw(run, device, seed)
    return f"seed {drawn_from} on {where.type}"

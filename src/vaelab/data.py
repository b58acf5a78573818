"""MNIST on disk: find, read and check the IDX files, and binarize the images.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian
4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian 4-byte size per dimension, then the data in row-major order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from vaelab.errors import VaelabError

IMAGE_SIDE = 28
DATA_SIZE = IMAGE_SIDE * IMAGE_SIDE

# name (decompressed) -> (bytes, SHA-256 of the decompressed bytes)
MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (
        47040016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        60008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        7840016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        10008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The article's transform: ToTensor (byte / 255), Normalize((0.1307,), (0.3081,)),
# then keep pixels > 0.5. Solving (b / 255 - 0.1307) / 0.3081 > 0.5 for the byte b
# gives b > 255 * (0.1307 + 0.5 * 0.3081) = 72.61, i.e. b >= 73.
MNIST_MEAN, MNIST_STD, ARTICLE_CUT = 0.1307, 0.3081, 0.5
THRESHOLD_BYTE = math.floor(255 * (MNIST_MEAN + ARTICLE_CUT * MNIST_STD)) + 1  # 73

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes decompressed at a time
# The largest IDX file read_bytes accepts: far above any MNIST-format set (EMNIST's
# largest file holds 0.55 GB), far below what a damaged header can claim (64 EB).
MAX_IDX_BYTES = 4 << 30
# Content without an IDX header is only read for parse_idx to reject by its first bytes.
_NOT_IDX_LIMIT = 1 << 20


@dataclass(frozen=True)
class Split:
    """One split of the dataset as it lies on disk: raw bytes, not yet binarized."""

    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64
    files: dict[str, str]  # file name -> SHA-256 of its decompressed bytes


def bundled_dir() -> Path:
    """The copy of MNIST that ships inside the package."""
    return Path(str(resources.files("vaelab") / "datasets" / "mnist"))


def read_bytes(path: Path) -> bytes:
    """A file's content, decompressed when it is gzip (judged by content, not name).

    Read in chunks and bounded by the IDX header at the start of the content:
    reading stops one byte past the size the header announces, so a gzip bomb or
    a file longer than its header says fails here instead of filling memory.
    """
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise VaelabError(f"{path} does not exist") from None
    except OSError as exc:
        raise VaelabError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        try:
            gzipped = file.read(2) == _GZIP_MAGIC
            file.seek(0)
            if not gzipped:
                return _read_bounded(file, path)
        except OSError as exc:
            raise VaelabError(f"cannot read {path}: {exc.strerror}") from None
        try:
            with gzip.GzipFile(fileobj=file) as stream:
                return _read_bounded(stream, path)
        except (EOFError, OSError, zlib.error) as exc:
            raise VaelabError(
                f"{path} is a damaged gzip file ({exc}); replace it, e.g. with --download "
                "into an empty --data-dir"
            ) from None


def _read_bounded(stream: BinaryIO, path: Path) -> bytes:
    """All of `stream`, failing once it holds more than its IDX header announces."""
    head = _read_at_most(stream, 4)
    idx = len(head) == 4 and head[:3] == bytes([0, 0, _IDX_UBYTE]) and 1 <= head[3] <= 4
    if idx:
        head += _read_at_most(stream, 4 * head[3])
    if idx and len(head) == 4 + 4 * head[3]:
        shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3]))
        limit = len(head) + math.prod(shape)
        if limit > MAX_IDX_BYTES:
            raise VaelabError(
                f"{path} has a damaged header: dimensions {shape} would need {limit} bytes, more than the "
                f"{MAX_IDX_BYTES} (4 GiB) vaelab reads; replace the file"
            )
        too_long = (
            f"{path} is longer than its header says: dimensions {shape} need {limit} bytes, found more; "
            "the file is damaged, replace it"
        )
    else:  # not IDX (or cut inside its header): parse_idx rejects it by its first bytes
        limit = _NOT_IDX_LIMIT
        too_long = (
            f"{path} is not an IDX file of unsigned bytes (it starts with 0x{head[:4].hex()}, not 0x000008 and "
            f"its number of dimensions) and holds more than {limit} bytes; replace it"
        )
    data = io.BytesIO()
    data.write(head)
    while chunk := stream.read(min(_CHUNK, limit + 1 - data.tell())):  # one byte past: longer shows
        data.write(chunk)
        if data.tell() > limit:
            raise VaelabError(too_long)
    return data.getvalue()


def _read_at_most(stream: BinaryIO, size: int) -> bytes:
    """The next `size` bytes of `stream`, fewer only at its end."""
    data = b""
    while len(data) < size and (chunk := stream.read(size - len(data))):
        data += chunk
    return data


def parse_idx(data: bytes, *, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into an array, checking magic, dimensions and length."""
    if len(data) < 4:
        raise VaelabError(f"{name} is too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or not 1 <= data[3] <= 4:
        raise VaelabError(
            f"{name} has the wrong magic number 0x{data[:4].hex()}; an IDX file of unsigned "
            "bytes starts with 0x000008 and its number of dimensions (e.g. 0x00000803 for images)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VaelabError(f"{name} is truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise VaelabError(
            f"{name} is {what}: dimensions {shape} need {expected} bytes, found {len(data)}; "
            "the file is damaged, replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def locate_files(data_dir: str | Path) -> dict[str, Path]:
    """Paths of the four MNIST files in `data_dir`, flat or in torchvision's MNIST/raw/."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise VaelabError(
            f"data directory {root} {what}; point --data-dir at the folder holding the MNIST "
            "files, or add --download to fetch them there"
        )
    best: dict[str, Path] = {}
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        found = {}
        for name in MNIST_FILES:
            # Also accept the common 'train-images.idx3-ubyte' spelling.
            spellings = (name, name.replace("-idx", ".idx"))
            candidates = [folder / (s + ext) for s in spellings for ext in (".gz", "")]
            hit = next((c for c in candidates if c.is_file()), None)
            if hit is not None:
                found[name] = hit
        if len(found) == len(MNIST_FILES):
            return found
        best = max(best, found, key=len)
    missing = ", ".join(name for name in MNIST_FILES if name not in best)
    raise VaelabError(
        f"no complete MNIST in {root}: missing {missing} (each may be .gz, directly in the "
        "folder or in MNIST/raw/); add --download to fetch them, or omit --data-dir to use "
        "the bundled copy"
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_checksum(name: str, data: bytes, source: Path | str) -> None:
    """Fail unless `data` is the genuine MNIST file `name`."""
    size, digest = MNIST_FILES[name]
    actual = sha256(data)
    if actual != digest:
        raise VaelabError(
            f"{source} fails its checksum (SHA-256 {actual[:16]}..., expected {digest[:16]}...); "
            "the file is damaged: delete it and fetch it again with --download"
        )


def load_split(split: str, data_dir: str | Path | None = None) -> Split:
    """Read one split ('train' or 'test') from `data_dir`, or from the bundled copy.

    The bundled files are verified by checksum. Files in a user's folder are only
    checked for structure, so MNIST-format sets such as Fashion-MNIST load too;
    their checksums are returned so the run can record what it was trained on.
    """
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; use 'train' or 'test'")
    bundled = data_dir is None
    paths = locate_files(bundled_dir() if bundled else data_dir)
    image_name, label_name = SPLITS[split]
    arrays, files = {}, {}
    for name in (image_name, label_name):
        data = read_bytes(paths[name])
        if bundled:
            verify_checksum(name, data, paths[name])
        arrays[name] = parse_idx(data, name=str(paths[name]))
        files[name] = sha256(data)
    images, labels = arrays[image_name], arrays[label_name]
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise VaelabError(
            f"{paths[image_name]} holds arrays of shape {images.shape}; "
            f"expected (N, {IMAGE_SIDE}, {IMAGE_SIDE}) images"
        )
    if labels.ndim != 1:
        raise VaelabError(f"{paths[label_name]} holds shape {labels.shape}; expected (N,) labels")
    if len(images) != len(labels):
        raise VaelabError(
            f"{paths[image_name]} has {len(images)} images but {paths[label_name]} has "
            f"{len(labels)} labels; the two files must come from the same split"
        )
    if len(images) == 0:
        raise VaelabError(f"{paths[image_name]} holds no images")
    return Split(
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        files=files,
    )


# --- binarization -------------------------------------------------------------
def binarize_threshold(images: torch.Tensor) -> torch.Tensor:
    """The article's black-and-white images: 1.0 where byte >= 73, else 0.0. (N, 784)"""
    return (images.reshape(len(images), -1) >= THRESHOLD_BYTE).float()


def grey_levels(images: torch.Tensor) -> torch.Tensor:
    """Bytes scaled to [0, 1], the Bernoulli means of dynamic binarization. (N, 784)"""
    return images.reshape(len(images), -1).float() / 255.0


def binarize_dynamic(grey: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh Bernoulli sample of grey levels (Salakhutdinov & Murray 2008)."""
    return torch.bernoulli(grey, generator=generator)


def binarize(images: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    """Images as the model sees them, (N, 784) floats in {0, 1}, on the generator's device.

    'threshold' is deterministic; 'dynamic' draws one Bernoulli sample (used for the
    test set, which stays fixed while the training images are redrawn every batch).
    """
    images = images.to(generator.device)
    if method == "threshold":
        return binarize_threshold(images)
    if method == "dynamic":
        return binarize_dynamic(grey_levels(images), generator)
    raise VaelabError(f"unknown binarization {method!r}; use threshold or dynamic")


# --- provenance -------------------------------------------------------------------
class DataMismatchWarning(UserWarning):
    """Data read now differ from the files a run recorded when it was trained."""


def data_mismatches(recorded: dict[str, str], found: dict[str, str]) -> list[str]:
    """The files of `found` whose SHA-256 differs from the one `recorded`, described one each.

    Files a run did not record (runs of very old versions) are not compared.
    """
    return [
        f"{name}: recorded {recorded[name][:12]}…, found {digest[:12]}…"
        for name, digest in sorted(found.items())
        if name in recorded and recorded[name] != digest
    ]


def absolute_data_dir(data_dir: str | Path | None) -> str | None:
    """The absolute path a (possibly relative, possibly ~) --data-dir meant, as the run stores it."""
    return None if data_dir is None else str(Path(os.path.abspath(Path(data_dir).expanduser())))

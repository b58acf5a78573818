"""IDX files, the format of MNIST and its kin: read them safely and decode them.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian
4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian 4-byte size per dimension, then the data in row-major order. Files
may be gzip-compressed (judged by content, not name). Reading is bounded by the
header, so a damaged header, a file longer than it says or a gzip bomb fails
with an error that names the file instead of filling memory.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaelab.errors import VaelabError

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes decompressed at a time
# The largest IDX file read_bytes accepts: far above any MNIST-format set (EMNIST's
# largest file holds 0.55 GB), far below what a damaged header can claim (64 EB).
MAX_IDX_BYTES = 4 << 30
# Content without an IDX header is only read for parse_idx to reject by its first bytes.
_NOT_IDX_LIMIT = 1 << 20


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


def idx_shape(path: Path) -> tuple[int, ...] | None:
    """The dimensions an IDX file's header announces, read without the data; None if unreadable."""
    try:
        with open(path, "rb") as file:
            gzipped = file.read(2) == _GZIP_MAGIC
            file.seek(0)
            stream = gzip.GzipFile(fileobj=file) if gzipped else file
            head = _read_at_most(stream, 4)
            if len(head) < 4 or not 1 <= head[3] <= 4:
                return None
            head += _read_at_most(stream, 4 * head[3])
    except (EOFError, OSError, zlib.error):
        return None
    if len(head) != 4 + 4 * head[3]:
        return None
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3]))

"""vaelab.idx: decoding IDX bytes and reading IDX files safely (gzip by content, bounded by the header)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from vaelab.errors import VaelabError
from vaelab.idx import MAX_IDX_BYTES, idx_shape, parse_idx, read_bytes


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array (magic 0x000008nn, big-endian sizes, data)."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


# --- parse_idx ----------------------------------------------------------------
def test_parse_idx_hand_built_images_round_trip():
    pixels = bytes((i * 7 + 3) % 256 for i in range(3 * 28 * 28))
    data = (
        b"\x00\x00\x08\x03"  # magic: unsigned bytes, 3 dimensions
        b"\x00\x00\x00\x03"  # 3 images
        b"\x00\x00\x00\x1c"  # 28 rows
        b"\x00\x00\x00\x1c"  # 28 columns
        + pixels
    )
    array = parse_idx(data)
    assert array.shape == (3, 28, 28)
    assert array.dtype == np.uint8
    assert array.tobytes() == pixels
    assert array[0, 0, 0] == 3 and array[0, 0, 1] == 10  # row-major order
    assert array[1, 0, 0] == (784 * 7 + 3) % 256
    assert array[2, 27, 27] == ((3 * 784 - 1) * 7 + 3) % 256


def test_parse_idx_hand_built_labels_round_trip():
    data = b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + bytes([7, 2, 1, 0, 9])
    array = parse_idx(data)
    assert array.shape == (5,)
    assert array.tolist() == [7, 2, 1, 0, 9]


def test_parse_idx_helper_round_trip_random():
    array = np.random.default_rng(1).integers(0, 256, size=(4, 5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    "magic",
    [
        b"\x00\x00\x08\x00",  # zero dimensions
        b"\x00\x00\x08\x05",  # five dimensions
        b"\x00\x00\x0d\x03",  # float data, not unsigned bytes
        b"\x01\x00\x08\x03",  # non-zero leading byte
        b"\x1f\x8b\x08\x00",  # still gzip-compressed
    ],
)
def test_parse_idx_wrong_magic(magic):
    data = magic + (1).to_bytes(4, "big") * 3 + b"\x00"
    with pytest.raises(VaelabError, match="magic") as info:
        parse_idx(data, name="my-file")
    assert "my-file" in str(info.value)
    assert magic.hex() in str(info.value)


def test_parse_idx_truncated_data():
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-1]
    with pytest.raises(VaelabError, match="truncated") as info:
        parse_idx(data, name="imgs")
    msg = str(info.value)
    assert "imgs" in msg and str(16 + 3 * 784) in msg and str(16 + 3 * 784 - 1) in msg


def test_parse_idx_extra_trailing_bytes():
    data = idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00\x00"
    with pytest.raises(VaelabError, match="longer than its header says") as info:
        parse_idx(data, name="labels")
    assert "truncated" not in str(info.value)


def test_parse_idx_truncated_header():
    data = b"\x00\x00\x08\x03" + (3).to_bytes(4, "big") + b"\x00\x00"  # 10 of 16 header bytes
    with pytest.raises(VaelabError, match="truncated inside its header"):
        parse_idx(data)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x08"])
def test_parse_idx_too_short_for_magic(data):
    with pytest.raises(VaelabError, match=f"too short.*{len(data)} bytes"):
        parse_idx(data)


# --- read_bytes -----------------------------------------------------------------
def test_read_bytes_gzip_detected_by_content(tmp_path):
    payload = bytes(range(256)) * 40
    raw = tmp_path / "plain.gz"  # misleading name: not compressed
    raw.write_bytes(payload)
    packed = tmp_path / "packed.idx"  # misleading name: compressed
    packed.write_bytes(gzip.compress(payload))
    assert packed.read_bytes() != payload
    assert read_bytes(raw) == payload
    assert read_bytes(packed) == payload


def test_read_bytes_truncated_gzip_names_path(tmp_path):
    path = tmp_path / "cut.gz"
    blob = gzip.compress(bytes(range(256)) * 100)
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VaelabError, match="damaged gzip") as info:
        read_bytes(path)
    assert str(path) in str(info.value)


def test_read_bytes_flipped_gzip_bytes_names_path(tmp_path):
    path = tmp_path / "flipped.gz"
    blob = bytearray(gzip.compress(np.random.default_rng(0).integers(0, 4, 5000, dtype=np.uint8).tobytes()))
    middle = len(blob) // 2
    for i in range(middle, middle + 8):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(VaelabError, match="damaged gzip") as info:
        read_bytes(path)
    assert str(path) in str(info.value)


def test_read_bytes_missing_file(tmp_path):
    with pytest.raises(VaelabError, match="does not exist") as info:
        read_bytes(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_read_bytes_directory(tmp_path):
    with pytest.raises(VaelabError, match="cannot read"):
        read_bytes(tmp_path)


def write_gzip_bomb(path: Path, head: bytes, megabytes: int) -> Path:
    """`head` then `megabytes` MiB of zeros, gzipped 1 MiB at a time (a few hundred KB on disk)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
    zeros = bytes(1 << 20)
    with path.open("wb") as file:
        file.write(packer.compress(head))
        for _ in range(megabytes):
            file.write(packer.compress(zeros))
        file.write(packer.flush())
    return path


def read_bytes_traced(path: Path) -> tuple[VaelabError, int]:
    """The error read_bytes(path) raises, and the peak memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(VaelabError) as info:
            read_bytes(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


def test_read_bytes_gzip_bomb_after_an_idx_header(tmp_path):
    """A header for 10 images (7,856 bytes), then 100 MB more: stops one byte past the header's size."""
    header = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:16]
    path = write_gzip_bomb(tmp_path / "bomb.gz", header, 100)
    assert path.stat().st_size < 200_000
    error, peak = read_bytes_traced(path)
    message = str(error)
    assert f"{path} is longer than its header says" in message and "(10, 28, 28) need 7856 bytes" in message
    assert "\n" not in message
    assert peak < 5e6, peak  # never the 100 MB


def test_read_bytes_gzip_bomb_without_a_header(tmp_path):
    """Zeros from the first byte are no IDX file: read only up to the 1 MiB such content is allowed."""
    path = write_gzip_bomb(tmp_path / "zeros.idx", b"", 100)
    error, peak = read_bytes_traced(path)
    message = str(error)
    assert f"{path} is not an IDX file of unsigned bytes (it starts with 0x00000000," in message
    assert "more than 1048576 bytes" in message
    assert peak < 5e6, peak


@pytest.mark.parametrize("gz", [True, False])
def test_read_bytes_file_one_byte_longer_than_its_header(tmp_path, gz):
    data = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4)) + b"\x00"  # 12 + 12 bytes, and one more
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(VaelabError, match=r"longer than its header says: dimensions \(3, 4\) need 24 bytes"):
        read_bytes(path)
    path.write_bytes(gzip.compress(data[:-1]) if gz else data[:-1])  # exactly as long: read as before
    assert read_bytes(path) == data[:-1]


def test_read_bytes_header_claiming_more_than_4_gib(tmp_path):
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (70000, 280, 280))
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(VaelabError, match="damaged header") as info:
        read_bytes(path)
    message = str(info.value)
    assert "(70000, 280, 280) would need 5488000016 bytes" in message
    assert f"more than the {MAX_IDX_BYTES} (4 GiB)" in message and MAX_IDX_BYTES == 4 * 2**30


def test_read_bytes_header_claiming_much_more_than_the_file_holds(tmp_path):
    """A claim under the limit (3 GB) with 100 bytes behind it: read as it is, nothing reserved up front."""
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (3_000_000, 28, 36))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(header + bytes(100)))
    tracemalloc.start()
    try:
        data = read_bytes(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == header + bytes(100) and peak < 5e6, peak
    with pytest.raises(VaelabError, match="truncated"):
        parse_idx(data)




# --- idx_shape ------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_shape_reads_the_header_alone(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 5, 7), np.uint8))[:16] + bytes(10)  # the data cut short: the header is enough
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert idx_shape(path) == (3, 5, 7)


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x08", b"\x00\x00\x08\x00", b"\x00\x00\x08\x02\x00\x00\x00\x03",
                                     b"\x1f\x8b not really gzip"])
def test_idx_shape_is_none_for_what_has_no_whole_header(tmp_path, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    assert idx_shape(path) is None
    assert idx_shape(tmp_path / "missing") is None

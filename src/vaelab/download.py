"""The one network access vaelab makes: an explicit, checksummed MNIST download.

Runs only with `--download`. Each file is fetched to a temporary name, checked
against the SHA-256 of the genuine decompressed bytes, and only then renamed
into place, so a failed or corrupted download never replaces anything.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from vaelab.data import MNIST_FILES, read_bytes, sha256
from vaelab.errors import VaelabError

# The mirrors torchvision uses, in its order of preference.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def missing_files(data_dir: Path) -> list[str]:
    """MNIST files absent from `data_dir` (flat layout, raw or .gz)."""
    return [
        name
        for name in MNIST_FILES
        if not any((data_dir / (name + ext)).is_file() for ext in (".gz", ""))
    ]


def download_mnist(
    data_dir: str | Path,
    *,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = 30.0,
    echo=print,
) -> list[Path]:
    """Fetch the MNIST files missing from `data_dir` (from `MIRRORS` unless given); return the paths written."""
    mirrors = mirrors or MIRRORS
    data_dir = Path(data_dir).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot create data directory {data_dir}: {exc.strerror}") from None
    written = []
    for name in missing_files(data_dir):
        written.append(_fetch_one(name, data_dir, mirrors, timeout, echo))
    return written


def _fetch_one(name: str, data_dir: Path, mirrors, timeout: float, echo) -> Path:
    target = data_dir / f"{name}.gz"
    partial = data_dir / f"{name}.gz.part"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        echo(f"downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                partial.write_bytes(response.read())
            actual = sha256(read_bytes(partial))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError, VaelabError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            partial.unlink(missing_ok=True)
            continue
        if actual != MNIST_FILES[name][1]:
            failures.append(f"{url}: checksum mismatch (SHA-256 {actual[:16]}...)")
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, target)
        return target
    raise VaelabError(
        f"could not download {name}: " + "; ".join(failures)
        + ". Check your connection, or copy the file into the data directory by hand"
    )

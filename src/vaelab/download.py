"""The one network access vaelab makes: an explicit, checksummed download of a dataset.

`download_dataset(spec, folder)` fetches the IDX files of a `catalog.DatasetSpec`
missing from `folder`, as NAME.gz from the spec's mirrors; `download_mnist` is
the same for MNIST.

Runs only with `--download`, only over https:// (redirects included), with the
server's certificate verified against Python's default trust store (the
standard SSL_CERT_FILE variable points it at another bundle).

A mirror cannot hold a download forever or fill memory: a read that stalls
fails after `timeout` seconds, a file that is not complete after `deadline`
seconds fails however steadily its bytes trickle in, and a body larger than the
genuine file could ever be compressed to (`size_cap`) is refused as soon as it
is announced or exceeded. The body is kept in memory, checked against the MD5
of the genuine .gz where the spec has one (KMNIST), decompressed in chunks that
stop one byte past the genuine size (so a gzip bomb fails there), and checked
for that exact size and the SHA-256 of the genuine decompressed bytes where the
spec has one (MNIST, Fashion-MNIST). Only then is it
written, by `vaelab.files.atomic_write`, so a failed, corrupted or interrupted
download (Ctrl-C included) leaves nothing in the data folder.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import ssl
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from vaelab.catalog import MNIST, DatasetSpec
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, remove_leftovers

MIRRORS = MNIST.mirrors  # download_mnist's default: torchvision's first, TensorFlow Datasets' second
_CHUNK = 1 << 20  # bytes read from the network, or decompressed, at a time


class _Failed(Exception):
    """Why one mirror's copy of a file was rejected (one line, without the URL)."""


def missing_files(data_dir: Path, spec: DatasetSpec = MNIST) -> list[str]:
    """The spec's files absent from `data_dir` (flat layout, raw or .gz)."""
    return [
        name
        for name in spec.files
        if not any((data_dir / (name + ext)).is_file() for ext in (".gz", ""))
    ]


def size_cap(name: str, spec: DatasetSpec = MNIST) -> int:
    """The most bytes a genuine `name`.gz can hold: its decompressed size plus gzip's worst case.

    Deflate stores incompressible data in blocks of at most 65,535 bytes with a
    5-byte header each (under 0.01%), and the gzip header and trailer add 18
    bytes plus an optional file name; 0.1% + 1 KiB covers all of it.
    """
    size = spec.files[name].size
    return size + size // 1000 + 1024


def download_mnist(data_dir: str | Path, *, mirrors: tuple[str, ...] | None = None, **options) -> list[Path]:
    """`download_dataset` for MNIST, from `MIRRORS` unless `mirrors` are given."""
    return download_dataset(MNIST, data_dir, mirrors=mirrors or MIRRORS, **options)


def download_dataset(
    spec: DatasetSpec,
    data_dir: str | Path,
    *,
    mirrors: tuple[str, ...] | None = None,
    timeout: float = 30.0,
    deadline: float = 300.0,
    context: ssl.SSLContext | None = None,
    echo=print,
) -> list[Path]:
    """Fetch the files of `spec` missing from `data_dir` (from its mirrors unless given); return the paths written.

    `timeout` bounds each network read (a stalled mirror), `deadline` each file
    from one mirror (a mirror that trickles); either failure moves on to the
    next mirror. `context` is the TLS context, Python's default unless given;
    while the call runs, its `sslsocket_class` is a subclass that keeps the deadline.
    """
    mirrors = mirrors or spec.mirrors
    if not mirrors:
        raise VaelabError(f"{spec.title} has no mirror to download from; copy its files into {data_dir} by hand")
    for mirror in mirrors:
        parts = urlsplit(mirror)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise VaelabError(
                f"refusing to download from {mirror}: vaelab downloads only over https://, so that nobody "
                "between you and the mirror can alter the files; give the mirror's https:// address"
            )
    data_dir = Path(data_dir).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot create data directory {data_dir}: {exc.strerror}") from None
    remove_leftovers(data_dir)  # temporary files of a write killed before it could clean up
    context = context or ssl.create_default_context()
    clock = _Clock(timeout)
    base = context.sslsocket_class
    context.sslsocket_class = type("DeadlineSSLSocket", (_DeadlineSocket, base), {"clock": clock})
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsRedirects)
        written = []
        for name in missing_files(data_dir, spec):
            blob = _fetch_one(spec, name, mirrors, opener, clock, timeout, deadline, echo)
            written.append(atomic_write(data_dir / f"{name}.gz", blob))
        return written
    finally:
        context.sslsocket_class = base


def _fetch_one(spec: DatasetSpec, name: str, mirrors, opener, clock: _Clock, timeout: float, deadline: float,
               echo) -> bytes:
    """The verified .gz of `name` from the first mirror that serves it, still in memory."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        echo(f"downloading {url}")
        try:
            blob = _read_capped(opener, url, size_cap(name, spec), timeout, deadline, clock)
            _verify(blob, spec, name)
        except _Failed as exc:
            failures.append(f"{url}: {exc}")
            continue
        return blob
    raise VaelabError(
        f"could not download {name}: " + "; ".join(failures)
        + ". Check your connection, or copy the file into the data directory by hand"
    )


def _read_capped(opener, url: str, cap: int, timeout: float, deadline: float, clock: _Clock) -> bytes:
    """The body at `url`, refused past `cap` bytes or once `deadline` seconds have passed."""
    clock.start(deadline)
    try:
        with opener.open(url, timeout=min(timeout, deadline)) as response:
            if response.length is not None and response.length > cap:
                raise _Failed(
                    f"announces {response.length} bytes, more than the {cap} a genuine copy can have"
                )
            body = io.BytesIO()
            while chunk := response.read(min(_CHUNK, cap + 1 - body.tell())):
                body.write(chunk)
                if body.tell() > cap:
                    raise _Failed(f"sends more than the {cap} bytes a genuine copy can have")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if clock.expired():
            raise _Failed(f"not complete after the deadline of {deadline:g} s: the download is too slow") from None
        raise _Failed(_describe(exc)) from None
    finally:
        clock.stop()
    return body.getvalue()


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return str(exc)  # 'HTTP Error 404: Not Found'
    reason = getattr(exc, "reason", exc)  # URLError wraps the cause
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"its certificate is not trusted ({reason.verify_message}); if your network inspects "
            "TLS, set SSL_CERT_FILE to the certificate bundle it gives you"
        )
    return str(reason) or type(reason).__name__


def _verify(blob: bytes, spec: DatasetSpec, name: str) -> None:
    """Fail unless `blob` is the genuine `name`.gz, never holding more than a chunk of it decompressed."""
    genuine = spec.files[name]
    if genuine.gz_md5 is not None:
        actual = hashlib.md5(blob, usedforsecurity=False).hexdigest()
        if actual != genuine.gz_md5:
            raise _Failed(f"checksum mismatch (MD5 {actual[:16]}..., expected {genuine.gz_md5[:16]}...)")
    size = genuine.size
    hasher = hashlib.sha256()
    total = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as stream:
            # Read one byte past the genuine size: that is how a longer stream shows.
            while chunk := stream.read(min(_CHUNK, size + 1 - total)):
                total += len(chunk)
                if total > size:
                    raise _Failed(
                        f"decompresses to more than the {size} bytes of the genuine file "
                        "(a damaged file or a gzip bomb)"
                    )
                hasher.update(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise _Failed(f"not a valid gzip file ({exc})") from None
    actual = hasher.hexdigest()
    if genuine.sha256 is not None and actual != genuine.sha256:
        raise _Failed(f"checksum mismatch (SHA-256 {actual[:16]}...)")
    if total != size:
        raise _Failed(f"decompresses to {total} bytes, not the {size} of the genuine file")


class _Clock:
    """The deadline of the file being fetched, which every TLS read and write checks."""

    def __init__(self, stall: float):
        self.stall = stall  # the per-read timeout
        self.stop()

    def start(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def stop(self) -> None:
        self.end = float("inf")

    def expired(self) -> bool:
        return time.monotonic() >= self.end - 0.01  # a wait cut short by the deadline may end a tick early

    def arm(self, sock: ssl.SSLSocket) -> None:
        """Give the next blocking call on `sock` no more time than the deadline leaves."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(min(self.stall, left))


class _DeadlineSocket(ssl.SSLSocket):
    """A TLS socket whose handshake, reads and writes all end by the clock's deadline.

    Each of these is one call into OpenSSL that treats the socket's timeout as
    the limit for the whole call, so setting the timeout to what is left of the
    deadline before each call bounds the download, however the bytes arrive.
    """

    clock: _Clock  # set on the subclass that download_dataset makes

    def do_handshake(self, *args, **kwargs):
        self.clock.arm(self)
        return super().do_handshake(*args, **kwargs)

    def read(self, *args, **kwargs):
        self.clock.arm(self)
        return super().read(*args, **kwargs)

    def send(self, *args, **kwargs):
        self.clock.arm(self)
        return super().send(*args, **kwargs)

    def write(self, *args, **kwargs):
        self.clock.arm(self)
        return super().write(*args, **kwargs)


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another https:// address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() != "https":
            fp.close()
            raise urllib.error.URLError(f"redirected to {newurl}, which is not https://")
        return super().redirect_request(req, fp, code, msg, headers, newurl)

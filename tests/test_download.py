"""vaelab.download against local HTTPS mirrors on 127.0.0.1 (never the internet).

The mirrors present tests/data/localhost-cert.pem, a self-signed certificate for
127.0.0.1 that the client trusts through `context=TRUSTED` (or SSL_CERT_FILE).
"""

from __future__ import annotations

import _thread
import dataclasses
import gzip
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from conftest import write_idx
from vaelab import catalog
from vaelab.catalog import DatasetSpec, FileSum
from vaelab.data import MNIST_FILES, bundled_dir, find_dataset, load_split, sha256
from vaelab.download import MIRRORS, download_dataset, download_mnist, missing_files, size_cap
from vaelab.errors import VaelabError
from vaelab.idx import read_bytes

NAMES = list(MNIST_FILES)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = NAMES
QUIET = lambda s: None  # noqa: E731
CERT = Path(__file__).parent / "data" / "localhost-cert.pem"
KEY = Path(__file__).parent / "data" / "localhost-key.pem"
TRUSTED = ssl.create_default_context(cafile=str(CERT))  # trusts the test certificate and nothing else


def download(dest, *mirrors: str, **options) -> list[Path]:
    """download_mnist from the given mirrors, trusting the test certificate, quietly."""
    return download_mnist(dest, mirrors=mirrors, **{"context": TRUSTED, "echo": QUIET, **options})


def fetch(spec: DatasetSpec, dest, *mirrors: str, **options) -> list[Path]:
    """download_dataset of `spec` from the given mirrors (its own if none), trusting the test certificate, quietly."""
    return download_dataset(spec, dest, mirrors=mirrors or None, **{"context": TRUSTED, "echo": QUIET, **options})


class _Server(http.server.ThreadingHTTPServer):
    """An HTTPS server whose handlers may meet clients that hang up: those errors are expected."""

    def handle_error(self, request, client_address):
        pass


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records the path of every request."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _TruncatingHandler(_QuietHandler):
    """Promises 1,000 bytes, sends 10, then drops the connection."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 8)


class _TrickleHandler(_QuietHandler):
    """Answers one byte a second, eight bytes in all, then hangs up; `phase` says where it starts."""

    phase = "body"

    def do_GET(self):
        self.server.requests.append(self.path)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10008\r\n\r\n"
        if self.phase == "body":
            self.wfile.write(answer)
            answer = b"\x1f\x8b\x08\x00" + bytes(100)
        for byte in answer[:8]:
            if self.server.stopping.wait(1.0):
                return
            self.wfile.write(bytes([byte]))


class _EndlessHandler(_QuietHandler):
    """Answers 200 without a length and streams bytes until the client hangs up (64 MiB at most)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        block = bytes(range(256)) * 256
        for _ in range(1024):
            self.wfile.write(block)


class _LengthHandler(_QuietHandler):
    """Announces `length` bytes (more than any genuine copy), then sends a few and waits."""

    length = 10**12

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(self.length))
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 8)
        self.server.stopping.wait(10)


class _RedirectHandler(_QuietHandler):
    """Answers every request with a redirect to `location`."""

    location = ""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _InterruptingHandler(_QuietHandler):
    """Sends half of the genuine file, presses Ctrl-C in the main thread, then sends the rest."""

    def do_GET(self):
        self.server.requests.append(self.path)
        blob = (bundled_dir() / f"{TEST_LABELS}.gz").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        self.wfile.write(blob[: len(blob) // 2])
        _thread.interrupt_main()  # raised in the main thread once it runs Python code again
        self.server.stopping.wait(0.2)
        self.wfile.write(blob[len(blob) // 2 :])


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local mirrors must not be routed through a configured proxy."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def serve():
    """serve(folder) or serve(handler=...) -> (https URL, list of requested paths); servers stop after the test."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(CERT, KEY)
    servers = []

    def start(folder: Path | None = None, handler=None):
        handler = handler or partial(_Handler, directory=str(folder))
        server = _Server(("127.0.0.1", 0), handler)
        # Handshake on the first read, in the request's thread, not in the accepting loop.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.requests, server.stopping = [], threading.Event()
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"https://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server, thread in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory) -> Path:
    """300 MB of zeros gzipped to about 300 KB, compressed 1 MiB at a time (never held whole)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
    zeros = bytes(1 << 20)
    with path.open("wb") as file:
        for _ in range(300):
            file.write(packer.compress(zeros))
        file.write(packer.flush())
    return path


def with_attributes(handler, **attributes):
    return type(handler.__name__, (handler,), attributes)


def copy_bundled(folder: Path, names=NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(bundled_dir() / f"{name}.gz", folder / f"{name}.gz")
    return folder


def wrong_content_gzip(name: str) -> bytes:
    """A valid gzip of the right length holding altered data: fails only the checksum."""
    data = bytearray(read_bytes(bundled_dir() / f"{name}.gz"))
    data[-1] ^= 0x01
    return gzip.compress(bytes(data))


def listing(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --- missing_files ------------------------------------------------------------------
def test_missing_files_reports_exactly_the_absent(tmp_path):
    assert missing_files(tmp_path) == NAMES
    (tmp_path / f"{TRAIN_LABELS}.gz").write_bytes(b"x")
    (tmp_path / TEST_IMAGES).write_bytes(b"x")  # uncompressed counts too
    (tmp_path / "unrelated.txt").write_bytes(b"x")
    assert missing_files(tmp_path) == [TRAIN_IMAGES, TEST_LABELS]
    (tmp_path / f"{TRAIN_IMAGES}.gz.part").write_bytes(b"x")  # a partial download (of old versions) does not
    (tmp_path / TEST_LABELS).mkdir()  # nor a folder of that name
    assert missing_files(tmp_path) == [TRAIN_IMAGES, TEST_LABELS]
    for name in (TRAIN_IMAGES, TEST_LABELS):
        (tmp_path / f"{name}.gz").write_bytes(b"x")
    assert missing_files(tmp_path) == []


def test_missing_files_of_absent_folder(tmp_path):
    assert missing_files(tmp_path / "nowhere") == NAMES


# --- download_mnist ----------------------------------------------------------------------
def test_download_all_four_then_load(tmp_path, serve):
    url, requests = serve(copy_bundled(tmp_path / "mirror"))
    dest = tmp_path / "dest" / "mnist"  # created, parents included
    written = download(dest, url)
    assert written == [dest / f"{name}.gz" for name in NAMES]
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        assert (dest / f"{name}.gz").read_bytes() == (bundled_dir() / f"{name}.gz").read_bytes()
    assert sorted(requests) == sorted(f"/{n}.gz" for n in NAMES)
    test = load_split("test", dest)
    assert test.images.shape == (10000, 28, 28)
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert test.files == {n: MNIST_FILES[n][1] for n in (TEST_IMAGES, TEST_LABELS)}
    # Nothing left to fetch: a second call makes no request at all.
    assert download(str(dest), url) == []
    assert len(requests) == 4


def test_download_echoes_each_url(tmp_path, serve):
    url, _ = serve(copy_bundled(tmp_path / "mirror", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    lines = []
    download(dest, url.rstrip("/"), echo=lines.append)  # with or without '/'
    assert lines == [f"downloading {url}{TEST_LABELS}.gz"]


def test_corrupted_first_mirror_falls_back_to_second(tmp_path, serve):
    bad = copy_bundled(tmp_path / "bad", [TEST_LABELS])
    (bad / f"{TEST_LABELS}.gz").write_bytes(wrong_content_gzip(TEST_LABELS))
    bad_url, bad_requests = serve(bad)
    good_url, good_requests = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])

    written = download(dest, bad_url, good_url)

    assert written == [dest / f"{TEST_LABELS}.gz"]
    assert bad_requests == [f"/{TEST_LABELS}.gz"] and good_requests == [f"/{TEST_LABELS}.gz"]
    assert sha256(read_bytes(written[0])) == MNIST_FILES[TEST_LABELS][1]
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)  # no temporary file
    assert len(load_split("test", dest).labels) == 10000


def test_damaged_gzip_on_first_mirror_falls_back(tmp_path, serve):
    bad = copy_bundled(tmp_path / "bad", [TEST_LABELS])
    blob = (bad / f"{TEST_LABELS}.gz").read_bytes()
    (bad / f"{TEST_LABELS}.gz").write_bytes(blob[: len(blob) // 2])  # cut short
    bad_url, _ = serve(bad)
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download(dest, bad_url, good_url)
    assert path.read_bytes() == (bundled_dir() / f"{TEST_LABELS}.gz").read_bytes()


def test_missing_on_first_mirror_falls_back(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    empty_url, empty_requests = serve(tmp_path / "empty")
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download(dest, empty_url, good_url)
    assert empty_requests == [f"/{TEST_LABELS}.gz"]  # answered 404
    assert sha256(read_bytes(path)) == MNIST_FILES[TEST_LABELS][1]


def test_only_corrupted_mirror_fails_and_leaves_dest_untouched(tmp_path, serve):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in NAMES:  # valid gzips with the wrong content
        (bad / f"{name}.gz").write_bytes(gzip.compress(f"not {name}".encode()))
    url, requests = serve(bad)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_LABELS])
    (dest / "notes.txt").write_text("mine")
    old = os.stat(dest / f"{TRAIN_LABELS}.gz").st_mtime_ns - 10_000_000_000
    os.utime(dest / f"{TRAIN_LABELS}.gz", ns=(old, old))  # so a rewrite would show
    before = listing(dest)

    with pytest.raises(VaelabError, match="checksum") as info:
        download(dest, url)

    message = str(info.value)
    assert TRAIN_IMAGES in message and url in message
    assert listing(dest) == before  # no .gz, no temporary file, nothing rewritten
    assert f"/{TRAIN_LABELS}.gz" not in requests  # the file already present is not fetched
    assert requests == [f"/{TRAIN_IMAGES}.gz"]  # and it stops at the first failure


def test_only_damaged_gzip_mirror_leaves_nothing(tmp_path, serve):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{TEST_LABELS}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    url, _ = serve(bad)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    with pytest.raises(VaelabError, match=f"could not download {TEST_LABELS}"):
        download(dest, url)
    assert listing(dest) == before


def test_unreachable_mirror_fails_quickly(tmp_path):
    start = time.monotonic()
    with pytest.raises(VaelabError, match=r"could not download .*127\.0\.0\.1:1/"):
        download(tmp_path, "https://127.0.0.1:1/", timeout=2)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


def test_failures_of_every_mirror_are_reported(tmp_path, serve):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{TEST_LABELS}.gz").write_bytes(wrong_content_gzip(TEST_LABELS))
    bad_url, _ = serve(bad)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    with pytest.raises(VaelabError) as info:
        download(dest, "https://127.0.0.1:1/", bad_url, timeout=2)
    message = str(info.value)
    assert "127.0.0.1:1/" in message and "checksum mismatch" in message


def test_dest_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(VaelabError, match="cannot create data directory"):
        download(path, "https://127.0.0.1:1/", timeout=2)


def test_connection_dropped_mid_file_falls_back(tmp_path, serve):
    drop_url, _ = serve(handler=_TruncatingHandler)
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download(dest, drop_url, good_url, timeout=5)
    assert sha256(read_bytes(path)) == MNIST_FILES[TEST_LABELS][1]
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)  # no temporary file


# --- https only, certificates verified ---------------------------------------------------
def test_default_mirrors_are_https():
    assert MIRRORS and all(mirror.startswith("https://") for mirror in MIRRORS)
    assert MIRRORS == catalog.MNIST.mirrors
    for spec in catalog.DATASETS.values():
        assert spec.mirrors and all(mirror.startswith("https://") for mirror in spec.mirrors)


@pytest.mark.parametrize(
    "mirror", ["http://127.0.0.1:1/", "HTTP://example.org/mnist/", "ftp://example.org/mnist/", "127.0.0.1/mnist/"]
)
def test_mirror_that_is_not_https_is_refused_before_anything(tmp_path, mirror):
    dest = tmp_path / "dest"
    with pytest.raises(VaelabError, match="only over https://") as info:
        download(dest, "https://127.0.0.1:1/", mirror)
    message = str(info.value)
    assert mirror in message and "give the mirror's https:// address" in message and "\n" not in message
    assert not dest.exists()  # refused before the folder is even made


@pytest.mark.parametrize("how", ["default trust store", "wrong host name"])
def test_untrusted_certificate_fails_cleanly(tmp_path, serve, monkeypatch, how):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    url, requests = serve(copy_bundled(tmp_path / "mirror", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    if how == "default trust store":  # the system's CAs, which never signed the test certificate
        options = {"context": None}
        expected = "self-signed certificate"
    else:  # trusted, but issued for 127.0.0.1 only
        url, options = url.replace("127.0.0.1", "localhost"), {}
        expected = "Hostname mismatch"

    with pytest.raises(VaelabError, match="certificate is not trusted") as info:
        download(dest, url, timeout=5, **options)

    message = str(info.value)
    assert expected in message and "SSL_CERT_FILE" in message and "\n" not in message
    assert requests == []  # the handshake failed: no request was sent
    assert listing(dest) == before


def test_redirect_to_http_is_refused(tmp_path, serve):
    url, _ = serve(handler=with_attributes(_RedirectHandler, location="http://127.0.0.1:1/plain.gz"))
    with pytest.raises(VaelabError, match=r"redirected to http://127\.0\.0\.1:1/plain\.gz, which is not https://"):
        download(tmp_path, url, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_redirect_to_https_is_followed(tmp_path, serve):
    good_url, good_requests = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    moved_url, moved_requests = serve(
        handler=with_attributes(_RedirectHandler, location=f"{good_url}{TEST_LABELS}.gz")
    )
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download(dest, moved_url)
    assert moved_requests == good_requests == [f"/{TEST_LABELS}.gz"]
    assert path.read_bytes() == (bundled_dir() / f"{TEST_LABELS}.gz").read_bytes()


# --- bounded in time ----------------------------------------------------------------------
@pytest.mark.parametrize("phase", ["body", "status line"])
def test_server_sending_one_byte_a_second_fails_at_the_deadline(tmp_path, serve, phase):
    """Each byte comes well within the 30 s stall timeout, so only the overall deadline stops it."""
    url, requests = serve(handler=with_attributes(_TrickleHandler, phase=phase))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    start = time.monotonic()
    with pytest.raises(VaelabError, match="not complete after the deadline of 2 s: the download is too slow"):
        download(dest, url, timeout=30, deadline=2)
    elapsed = time.monotonic() - start
    assert 1.9 < elapsed < 6, elapsed  # the server would take 8 s
    assert requests == [f"/{TEST_LABELS}.gz"]
    assert listing(dest) == before


def test_server_that_never_answers_the_handshake_fails_at_the_deadline(tmp_path):
    """The TLS handshake counts against the deadline too, not only against the 30 s stall timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never speaks
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"
        start = time.monotonic()
        with pytest.raises(VaelabError, match="deadline of 1 s"):
            download(tmp_path, url, timeout=30, deadline=1)
        assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_slow_first_mirror_falls_back_to_second(tmp_path, serve):
    slow_url, _ = serve(handler=_TrickleHandler)
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    start = time.monotonic()
    [path] = download(dest, slow_url, good_url, deadline=1)
    assert time.monotonic() - start < 4  # the slow mirror would take 8 s
    assert path.read_bytes() == (bundled_dir() / f"{TEST_LABELS}.gz").read_bytes()


# --- bounded in size ----------------------------------------------------------------------
@pytest.mark.parametrize("name", [TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
def test_size_cap_admits_any_genuine_gzip(name):
    """Even incompressible bytes of the genuine size, gzipped at any level, fit under the cap."""
    size = MNIST_FILES[name][0]
    noise = np.random.default_rng(0).bytes(size)
    for level in (0, 1, 9):
        assert size < len(gzip.compress(noise, compresslevel=level)) <= size_cap(name)
    assert (bundled_dir() / f"{name}.gz").stat().st_size < size_cap(name)
    assert size_cap(name) < size * 1.002 + 2048  # and a cap, not a formality


@pytest.mark.parametrize(
    "handler, expected",
    [
        (_EndlessHandler, f"sends more than the {size_cap(TEST_LABELS)} bytes"),
        (_LengthHandler, f"announces 1000000000000 bytes, more than the {size_cap(TEST_LABELS)}"),
        (
            with_attributes(_LengthHandler, length=size_cap(TEST_LABELS) + 1),
            f"announces {size_cap(TEST_LABELS) + 1} bytes",
        ),
    ],
)
def test_body_larger_than_the_cap_is_refused(tmp_path, serve, handler, expected):
    url, requests = serve(handler=handler)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    start = time.monotonic()
    with pytest.raises(VaelabError, match=expected):
        download(dest, url, timeout=5)
    assert time.monotonic() - start < 3  # refused at once, not after 64 MiB or 10 s of waiting
    assert requests == [f"/{TEST_LABELS}.gz"]
    assert listing(dest) == before


def test_gzip_bomb_fails_in_bounded_memory(tmp_path, serve, gzip_bomb):
    """300 MB of zeros in a 300 KB .gz: under the body cap, so decompression itself must stop."""
    size = MNIST_FILES[TRAIN_IMAGES][0]
    assert gzip_bomb.stat().st_size < size_cap(TRAIN_IMAGES)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(gzip_bomb, mirror / f"{TRAIN_IMAGES}.gz")
    url, requests = serve(mirror)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
    before = listing(dest)
    tracemalloc.start()
    try:
        with pytest.raises(VaelabError, match=f"decompresses to more than the {size} bytes") as info:
            download(dest, url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "gzip bomb" in str(info.value)
    assert peak < 16e6, peak  # never the 300 MB, nor even the 47 MB of a genuine file
    assert requests == [f"/{TRAIN_IMAGES}.gz"]
    assert listing(dest) == before


# --- no partial files ---------------------------------------------------------------------
def test_ctrl_c_mid_download_leaves_nothing(tmp_path, serve):
    # Ctrl-C as Python answers it by default, whatever handler an earlier test left behind (interrupt_main
    # does nothing where SIGINT is ignored, and a handler that only records it would not raise).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupted_download(tmp_path, serve)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_download(tmp_path, serve):
    url, requests = serve(handler=_InterruptingHandler)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    with pytest.raises(KeyboardInterrupt):
        download(dest, url, timeout=5)
    assert requests == [f"/{TEST_LABELS}.gz"]
    assert listing(dest) == before


def test_leftover_of_a_killed_write_is_removed(tmp_path, serve):
    url, _ = serve(copy_bundled(tmp_path / "mirror", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    (dest / f".{TEST_LABELS}.gz.0123456789abcdef.tmp").write_bytes(b"half a file")  # nobody holds its lock
    download(dest, url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)


def test_the_download_flag_of_vaelab_train(tmp_path, serve, monkeypatch, capsys):
    """`vaelab train --download --data-dir EMPTY` fetches, verifies, then trains; nothing else goes online."""
    import vaelab.download
    from vaelab.cli import main

    url, requests = serve(copy_bundled(tmp_path / "mirror"))
    monkeypatch.setattr(vaelab.download, "MIRRORS", (url,))
    monkeypatch.setitem(catalog.DATASETS, "mnist", dataclasses.replace(catalog.MNIST, mirrors=(url,)))
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))  # how a user trusts their own bundle
    data = tmp_path / "data"
    args = ["train", "--download", "--data-dir", str(data), "--epochs", "1", "--latent-size", "4", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in data.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    assert len(requests) == 4 and "downloading" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "again")]) == 0  # files present: no second download
    assert len(requests) == 4


# --- other datasets: KMNIST (MD5 of the .gz), Fashion-MNIST (SHA-256), the cache -----------------
def small_dataset(folder: Path, *, seed: int = 0) -> dict[str, bytes]:
    """Four small IDX files (6 training, 4 test images of 28 x 28) gzipped into `folder`; their decompressed bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1], dtype=np.uint8)}
    written = {}
    for name, array in arrays.items():
        data = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        written[name] = data
    return written


def kmnist_like(mirror: Path, **changes) -> DatasetSpec:
    """KMNIST's spec for the files in `mirror`: the MD5 of each .gz served, and the decompressed size."""
    files = {name: FileSum(len(read_bytes(mirror / f"{name}.gz")),
                           gz_md5=hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest())
             for name in NAMES}
    return dataclasses.replace(catalog.KMNIST, files=files, **changes)


def fashion_like(mirror: Path, **changes) -> DatasetSpec:
    """Fashion-MNIST's spec for the files in `mirror`: the SHA-256 and size of each decompressed file."""
    files = {name: FileSum(len(data := read_bytes(mirror / f"{name}.gz")), sha256(data)) for name in NAMES}
    return dataclasses.replace(catalog.FASHION_MNIST, files=files, **changes)


def test_kmnist_download_checks_md5_then_loads(tmp_path, serve, monkeypatch):
    written = small_dataset(tmp_path / "mirror")
    url, requests = serve(tmp_path / "mirror")
    spec = kmnist_like(tmp_path / "mirror", mirrors=(url,))
    dest = tmp_path / "dest"
    lines = []
    assert fetch(spec, dest, echo=lines.append) == [dest / f"{name}.gz" for name in NAMES]
    assert lines == [f"downloading {url}{name}.gz" for name in NAMES]
    for name in NAMES:
        assert (dest / f"{name}.gz").read_bytes() == (tmp_path / "mirror" / f"{name}.gz").read_bytes()
    monkeypatch.setitem(catalog.DATASETS, "kmnist", spec)
    test = load_split("test", dest, dataset="kmnist")
    assert test.labels.tolist() == [3, 1, 4, 1] and test.classes.names[4] == "na"
    assert test.files == {n: sha256(written[n]) for n in (TEST_IMAGES, TEST_LABELS)}
    assert fetch(spec, dest) == [] and len(requests) == 4


def test_kmnist_file_failing_its_md5_is_refused_and_nothing_written(tmp_path, serve):
    small_dataset(tmp_path / "mirror")
    spec = kmnist_like(tmp_path / "mirror")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in NAMES:  # the same bytes compressed otherwise: another .gz, another MD5
        data = read_bytes(tmp_path / "mirror" / f"{name}.gz")
        (bad / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=1))
    bad_url, bad_requests = serve(bad)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(VaelabError, match=rf"could not download {TRAIN_IMAGES}: {bad_url}{TRAIN_IMAGES}\.gz: "
                                          r"checksum mismatch \(MD5 [0-9a-f]{16}\.\.\., expected "):
        fetch(spec, dest, bad_url)
    assert list(dest.iterdir()) == [] and bad_requests == [f"/{TRAIN_IMAGES}.gz"]
    good_url, _ = serve(tmp_path / "mirror")
    assert len(fetch(spec, dest, bad_url, good_url)) == 4  # the next mirror's genuine copy is taken


def test_kmnist_file_of_the_wrong_size_is_refused(tmp_path, serve):
    small_dataset(tmp_path / "mirror")
    spec = kmnist_like(tmp_path / "mirror")
    wrong = dict(spec.files)
    wrong[TEST_LABELS] = dataclasses.replace(wrong[TEST_LABELS], size=wrong[TEST_LABELS].size + 1)
    url, _ = serve(tmp_path / "mirror")
    dest = tmp_path / "dest"
    with pytest.raises(VaelabError, match=f"{TEST_LABELS}.gz: decompresses to 12 bytes, not the 13 of the genuine"):
        fetch(dataclasses.replace(spec, files=wrong), dest, url)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES if n != TEST_LABELS)


def test_fashion_file_failing_its_sha256_is_refused_and_nothing_written(tmp_path, serve):
    small_dataset(tmp_path / "mirror")
    spec = fashion_like(tmp_path / "mirror")
    bad = tmp_path / "bad"
    small_dataset(bad, seed=1)  # valid IDX files of the genuine sizes, other pixels
    shutil.copyfile(tmp_path / "mirror" / f"{TRAIN_IMAGES}.gz", bad / f"{TRAIN_IMAGES}.gz")
    bad_url, requests = serve(bad)
    dest = tmp_path / "dest"
    with pytest.raises(VaelabError, match=f"could not download {TRAIN_LABELS}: .*checksum mismatch .SHA-256"):
        fetch(spec, dest, bad_url)
    assert [p.name for p in dest.iterdir()] == [f"{TRAIN_IMAGES}.gz"]  # the genuine one, written before
    assert requests == [f"/{TRAIN_IMAGES}.gz", f"/{TRAIN_LABELS}.gz"]


def test_size_cap_follows_the_spec(tmp_path, serve):
    small_dataset(tmp_path / "mirror")
    spec = kmnist_like(tmp_path / "mirror")
    assert size_cap(TEST_LABELS, spec) == 12 + 0 + 1024
    assert size_cap(TRAIN_IMAGES, spec) == 16 + 6 * 784 + (16 + 6 * 784) // 1000 + 1024
    url, requests = serve(handler=_EndlessHandler)
    dest = tmp_path / "dest"
    with pytest.raises(VaelabError, match=f"sends more than the {size_cap(TRAIN_IMAGES, spec)} bytes"):
        fetch(spec, dest, url, timeout=5)
    assert list(dest.iterdir()) == []


def test_dataset_without_mirrors(tmp_path):
    with pytest.raises(VaelabError, match="has no mirror to download from"):
        fetch(dataclasses.replace(catalog.KMNIST, mirrors=()), tmp_path)


@pytest.mark.parametrize("name", ["kmnist", "fashion-mnist"])
def test_download_into_the_cache_then_load(tmp_path, serve, monkeypatch, name):
    written = small_dataset(tmp_path / "mirror")
    url, requests = serve(tmp_path / "mirror")
    like = kmnist_like if name == "kmnist" else fashion_like
    monkeypatch.setitem(catalog.DATASETS, name, like(tmp_path / "mirror", mirrors=(url,), search=()))
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))  # how a user trusts their own bundle
    cache = tmp_path / "cache" / name
    with pytest.raises(VaelabError, match=f"is not in {cache}; "):
        load_split("test", dataset=name)
    lines = []
    assert find_dataset(name, download=True, echo=lines.append) == cache
    assert len(lines) == 4 and sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    test = load_split("test", dataset=name)
    assert test.labels.tolist() == [3, 1, 4, 1] and test.files[TEST_LABELS] == sha256(written[TEST_LABELS])
    assert test.classes == catalog.DATASETS[name].classes
    assert find_dataset(name, download=True) == cache and len(requests) == 4  # found: nothing fetched again


def test_download_into_a_data_dir(tmp_path, serve, monkeypatch):
    small_dataset(tmp_path / "mirror")
    url, requests = serve(tmp_path / "mirror")
    monkeypatch.setitem(catalog.DATASETS, "kmnist", kmnist_like(tmp_path / "mirror", mirrors=(url,)))
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    data = tmp_path / "data"
    with pytest.raises(VaelabError, match="data does not exist; .* Kuzushiji-MNIST files, or add --download"):
        find_dataset("kmnist", data)
    (data / "KMNIST" / "raw").mkdir(parents=True)
    with pytest.raises(VaelabError, match="no complete Kuzushiji-MNIST in .*KMNIST/raw/.*add --download"):
        find_dataset("kmnist", data)  # a torchvision folder with one file: the others are fetched
    shutil.copyfile(tmp_path / "mirror" / f"{TEST_LABELS}.gz", data / "KMNIST" / "raw" / f"{TEST_LABELS}.gz")
    assert find_dataset("kmnist", data, download=True, echo=QUIET) == data
    assert len(requests) == 4 and not (tmp_path / "cache").exists()
    assert load_split("train", data, dataset="kmnist").images.shape == (6, 28, 28)


def test_download_for_a_folder_dataset_fetches_mnist(tmp_path, serve, monkeypatch):
    """Before datasets had names, --download --data-dir DIR fetched MNIST; for --dataset folder it still does."""
    url, requests = serve(copy_bundled(tmp_path / "mirror"))
    monkeypatch.setitem(catalog.DATASETS, "mnist", dataclasses.replace(catalog.MNIST, mirrors=(url,)))
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))
    lines = []
    data = tmp_path / "data"
    assert find_dataset("folder", data, download=True, echo=lines.append) == data
    assert lines[0] == f"{data} lacks IDX files: fetching MNIST's (--dataset names another dataset to fetch)"
    assert len(requests) == 4 and len(lines) == 5
    test = load_split("test", data)
    assert test.classes == catalog.DIGITS and test.files == {n: MNIST_FILES[n][1] for n in (TEST_IMAGES, TEST_LABELS)}

    # a folder holding some IDX files of the user's own: MNIST's would be read in their place, so it is refused
    mine = tmp_path / "mine"
    mine.mkdir()
    images = load_split("train", data).images.numpy().copy()
    images[0, 0, 0] ^= 1  # the user's own images, one pixel from MNIST's
    write_idx(mine / "train-images.idx3-ubyte", images)  # the dot spelling, as some tools write them
    for name in (TRAIN_LABELS, TEST_IMAGES):  # and two of MNIST's
        shutil.copyfile(data / f"{name}.gz", mine / f"{name.replace('-idx', '.idx')}.gz")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(VaelabError, match=rf"^{re.escape(str(mine))} holds 1 IDX file that is not MNIST's "
                                          r"\(train-images\.idx3-ubyte\.gz\) but not all four; --download would fetch "
                                          "MNIST's beside them and mix two datasets: add the missing files "
                                          "yourself, or give --download a folder without IDX files of other data"):
        find_dataset("folder", mine, download=True, echo=QUIET)
    assert len(requests) == 4 and {p.name: p.read_bytes() for p in mine.iterdir()} == before

    # MNIST's own files, left by a download cut off: the same command again fetches the rest
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copyfile(data / f"{TRAIN_IMAGES}.gz", cut / f"{TRAIN_IMAGES}.gz")
    assert find_dataset("folder", cut, download=True, echo=QUIET) == cut
    assert len(requests) == 7 and load_split("test", cut).files == test.files  # the three missing ones

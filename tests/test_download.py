"""vaelab.download against local HTTP mirrors on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import gzip
import http.client
import http.server
import os
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from vaelab.data import MNIST_FILES, bundled_dir, load_split, read_bytes, sha256
from vaelab.download import download_mnist, missing_files
from vaelab.errors import VaelabError

NAMES = list(MNIST_FILES)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = NAMES
QUIET = lambda s: None  # noqa: E731


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records the path of every request."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1,000 bytes, sends 10, then drops the connection."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 8)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local mirrors must not be routed through a configured proxy."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def serve():
    """serve(folder) -> (url, list of requested paths); servers stop after the test."""
    servers = []

    def start(folder: Path | None = None, handler=None):
        handler = handler or partial(_Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.requests = []
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/", server.requests

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
    (tmp_path / f"{TRAIN_IMAGES}.gz.part").write_bytes(b"x")  # a partial download does not
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
    written = download_mnist(dest, mirrors=(url,), echo=QUIET)
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
    assert download_mnist(str(dest), mirrors=(url,), echo=QUIET) == []
    assert len(requests) == 4


def test_download_echoes_each_url(tmp_path, serve):
    url, _ = serve(copy_bundled(tmp_path / "mirror", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    lines = []
    download_mnist(dest, mirrors=(url.rstrip("/"),), echo=lines.append)  # with or without '/'
    assert lines == [f"downloading {url}{TEST_LABELS}.gz"]


def test_corrupted_first_mirror_falls_back_to_second(tmp_path, serve):
    bad = copy_bundled(tmp_path / "bad", [TEST_LABELS])
    (bad / f"{TEST_LABELS}.gz").write_bytes(wrong_content_gzip(TEST_LABELS))
    bad_url, bad_requests = serve(bad)
    good_url, good_requests = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])

    written = download_mnist(dest, mirrors=(bad_url, good_url), echo=QUIET)

    assert written == [dest / f"{TEST_LABELS}.gz"]
    assert bad_requests == [f"/{TEST_LABELS}.gz"] and good_requests == [f"/{TEST_LABELS}.gz"]
    assert sha256(read_bytes(written[0])) == MNIST_FILES[TEST_LABELS][1]
    assert not (dest / f"{TEST_LABELS}.gz.part").exists()
    assert len(load_split("test", dest).labels) == 10000


def test_damaged_gzip_on_first_mirror_falls_back(tmp_path, serve):
    bad = copy_bundled(tmp_path / "bad", [TEST_LABELS])
    blob = (bad / f"{TEST_LABELS}.gz").read_bytes()
    (bad / f"{TEST_LABELS}.gz").write_bytes(blob[: len(blob) // 2])  # cut short
    bad_url, _ = serve(bad)
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download_mnist(dest, mirrors=(bad_url, good_url), echo=QUIET)
    assert path.read_bytes() == (bundled_dir() / f"{TEST_LABELS}.gz").read_bytes()


def test_missing_on_first_mirror_falls_back(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    empty_url, empty_requests = serve(tmp_path / "empty")
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download_mnist(dest, mirrors=(empty_url, good_url), echo=QUIET)
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
        download_mnist(dest, mirrors=(url,), echo=QUIET)

    message = str(info.value)
    assert TRAIN_IMAGES in message and url in message
    assert listing(dest) == before  # no .gz, no .gz.part, nothing rewritten
    assert f"/{TRAIN_LABELS}.gz" not in requests  # the file already present is not fetched
    assert requests == [f"/{TRAIN_IMAGES}.gz"]  # and it stops at the first failure


def test_only_damaged_gzip_mirror_leaves_no_part_file(tmp_path, serve):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{TEST_LABELS}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    url, _ = serve(bad)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    before = listing(dest)
    with pytest.raises(VaelabError, match=f"could not download {TEST_LABELS}"):
        download_mnist(dest, mirrors=(url,), echo=QUIET)
    assert listing(dest) == before


def test_unreachable_mirror_fails_quickly(tmp_path):
    start = time.monotonic()
    with pytest.raises(VaelabError, match=r"could not download .*127\.0\.0\.1:1/"):
        download_mnist(tmp_path, mirrors=("http://127.0.0.1:1/",), timeout=2, echo=QUIET)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


def test_failures_of_every_mirror_are_reported(tmp_path, serve):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{TEST_LABELS}.gz").write_bytes(wrong_content_gzip(TEST_LABELS))
    bad_url, _ = serve(bad)
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    with pytest.raises(VaelabError) as info:
        download_mnist(dest, mirrors=("http://127.0.0.1:1/", bad_url), timeout=2, echo=QUIET)
    message = str(info.value)
    assert "127.0.0.1:1/" in message and "checksum mismatch" in message


def test_dest_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(VaelabError, match="cannot create data directory"):
        download_mnist(path, mirrors=("http://127.0.0.1:1/",), timeout=2, echo=QUIET)


def test_connection_dropped_mid_file_falls_back(tmp_path, serve):
    drop_url, _ = serve(handler=_TruncatingHandler)
    good_url, _ = serve(copy_bundled(tmp_path / "good", [TEST_LABELS]))
    dest = copy_bundled(tmp_path / "dest", [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES])
    [path] = download_mnist(dest, mirrors=(drop_url, good_url), timeout=5, echo=QUIET)
    assert sha256(read_bytes(path)) == MNIST_FILES[TEST_LABELS][1]
    assert not (dest / f"{TEST_LABELS}.gz.part").exists()


def test_the_download_flag_of_vaelab_train(tmp_path, serve, monkeypatch, capsys):
    """`vaelab train --download --data-dir EMPTY` fetches, verifies, then trains; nothing else goes online."""
    import vaelab.download
    from vaelab.cli import main

    url, requests = serve(copy_bundled(tmp_path / "mirror"))
    monkeypatch.setattr(vaelab.download, "MIRRORS", (url,))
    data = tmp_path / "data"
    args = ["train", "--download", "--data-dir", str(data), "--epochs", "1", "--latent-size", "4", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in data.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    assert len(requests) == 4 and "downloading" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "again")]) == 0  # files present: no second download
    assert len(requests) == 4

"""Shared fixtures: a small real MNIST (the first images of each bundled split), and a browser."""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import os
import re
import signal
import sys
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(autouse=True, scope="session")
def stop_signals_as_from_a_terminal():
    """The vaelab processes the tests start get Ctrl-C, SIGTERM and SIGHUP as from a terminal, however the
    suite was started: `nohup` or `&` in a script starts it ignoring some, which its children would inherit
    (and vaelab, rightly, keeps ignoring them). A signal ignored here gets a handler that does nothing
    instead: this process still ignores it, and a child's exec resets it to the default."""
    from vaelab.signals import STOP

    ignored = [sig for sig in STOP if signal.getsignal(sig) == signal.SIG_IGN]
    for sig in ignored:
        signal.signal(sig, lambda signum, frame: None)
    yield
    for sig in ignored:
        signal.signal(sig, signal.SIG_IGN)


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


def forge_eval(path: Path, how: str) -> None:
    """Damage eval.json at `path` in one way (`how`: "missing", "not JSON", "NaN", "other weights", ...)."""
    good = json.loads(path.read_text())
    texts = {
        "not JSON": "{not json",
        "not an object": "[]",
        "missing field": json.dumps({k: v for k, v in good.items() if k != "elbo"}),
        "extra field": json.dumps({**good, "extra": 1}),
        "wrong type": json.dumps({**good, "elbo": "high"}),
        "NaN": json.dumps({**good, "elbo": float("nan")}),
        "huge number": json.dumps(good).replace(json.dumps(good["elbo"]), "9" * 400, 1),
        "deep nesting": "[" * 100_000,
        "not UTF-8": '{"elbo": "\xff"}',
        "other weights": json.dumps({**good, "weights_sha256": "0" * 64, "step": 1}),
    }
    if how == "missing":
        path.unlink()
    elif how == "not UTF-8":
        path.write_bytes(b'{"elbo": "\xff"}')
    else:
        path.write_text(texts[how])


class SignalAfter:
    """A stand-in for `signals.stop_after_batch` (patch it into vaelab.training): the stop signal `signum`
    seems to arrive, once, as soon as `arrived()` is true, e.g. after the n-th step."""

    def __init__(self, signum: int, arrived):
        self.signum, self.arrived = signum, arrived

    def __call__(self) -> SignalAfter:
        return self

    def __enter__(self):
        return lambda: self.signum if self.arrived() else 0

    def __exit__(self, *exc) -> bool:
        return False


def stop_after_steps(monkeypatch, steps: int, signum: int = signal.SIGINT) -> dict[str, int]:
    """Make the stop signal `signum` seem to arrive once vaelab.training has taken `steps` steps, counted
    from now or from a reset of the count it returns (`count["n"] = 0`)."""
    import vaelab.training as train_module

    count = {"n": 0}
    real_step = train_module.train_step

    def counting_step(*args):
        count["n"] += 1
        return real_step(*args)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    monkeypatch.setattr(train_module, "stop_after_batch", SignalAfter(signum, lambda: count["n"] >= steps))
    return count


def csp_of(page: str) -> dict[str, str]:
    """The directives of a page's one Content-Security-Policy, by name."""
    found = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert len(found) == 1
    return dict(d.strip().split(" ", 1) for d in html.unescape(found[0]).split(";"))


# --- a real browser, for the pages vaelab writes ---------------------------------------------
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is never used

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

BROWSER_TESTS = [  # a browser test module's pytestmark: skipped, saying why, where there is no browser
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt install chromium)"),
]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Playwright's sync API allows one at a time)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """An offline tab: anything but file: and data: URLs is aborted, and every error is kept."""

    def __init__(self, browser, width: int = 1280, height: int = 900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.blocked: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, url: str, ready: str | None = None):
        """Go to `url` and wait until it has loaded and the JavaScript condition `ready`, if any, holds."""
        self.page.goto(url)
        self.page.wait_for_load_state("load")
        if ready is not None:
            self.page.wait_for_function(ready, timeout=20000)
        return self.page


def load_bench(name: str) -> ModuleType:
    """The script bench/NAME.py as a module (bench/ on the path while it loads: its scripts import each other)."""
    folder = Path(__file__).resolve().parents[1] / "bench"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))

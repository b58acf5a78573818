"""The report in a real browser: its figures and style shown under its own CSP, nothing loaded from outside.

Chromium (Debian's, /usr/bin/chromium) opens the page from a file:// URL with every other request
aborted, as tests/test_explorer_browser.py does for the explorer.
"""

from __future__ import annotations

import json
from dataclasses import replace

import matplotlib.image
import numpy as np

from conftest import BROWSER_TESTS, Page
from vaelab.checkpoint import load_run
from vaelab.evalfile import EvalResult
from vaelab.report import _render

pytestmark = BROWSER_TESTS

HOSTILE = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


def test_the_page_shows_its_figures_and_style_and_runs_nothing(browser, trained_run, tmp_path):
    matplotlib.image.imsave(tmp_path / "ramp.png", np.tile(np.linspace(0, 1, 64), (32, 1)), cmap="gray")
    run = load_run(trained_run)
    run = replace(run, config=replace(run.config, data_dir=HOSTILE))
    scores = EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))
    page_file = tmp_path / "report.html"
    page_file.write_text(_render(run, scores, [(HOSTILE, "a caption", tmp_path / "ramp.png"),
                                               ("", "", tmp_path / "ramp.png")]), encoding="utf-8")
    tab = Page(browser)
    try:
        page = tab.open(page_file.as_uri())
        images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert images == [[True, 64, 32], [True, 64, 32]]  # data: images allowed and decoded
        assert page.evaluate("getComputedStyle(document.body).maxWidth") == "1100px"  # its style ran (hash matched)
        assert page.evaluate("getComputedStyle(document.querySelector('.card')).borderRadius") == "8px"
        assert page.evaluate("window.pwned") is None  # the run's strings stayed text
        assert page.locator("h2").first.inner_text() == HOSTILE
        assert tab.errors == [] and tab.blocked == []
    finally:
        tab.context.close()

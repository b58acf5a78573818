"""The explorer page in a real browser: offline, under its CSP, and computing what PyTorch computes.

Chromium (Debian's, /usr/bin/chromium) runs the page from a file:// URL with every
other request aborted. The page's JavaScript networks are checked against the
models in vaelab.models to 1e-4 in pixel probability, for both architectures.
Screenshots of every view at 1280 and 390 px go to /tmp/explorer-shots/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BROWSER_TESTS, Page

SHOTS = Path("/tmp/explorer-shots")
VIEWS = ("map", "sliders", "draw", "between", "mix")
HOSTILE = "</script><script>window.pwned=1</script>"

pytestmark = BROWSER_TESTS


# --- pages ---------------------------------------------------------------------------
def untrained_run(data_dir: Path, tmp_path: Path, model: str = "mlp", **fields):
    """A Run holding a freshly initialised model: enough for the page, no training needed."""
    from vaelab.checkpoint import Run
    from vaelab.config import TrainConfig
    from vaelab.models import args_for, build_model

    torch.manual_seed(0)
    config = TrainConfig(model=model, data_dir=str(data_dir), **fields)
    net = build_model(model, args_for(config, image_shape=(28, 28))).eval()
    path = tmp_path / f"untrained-{model}"
    path.mkdir(exist_ok=True)
    return Run(path=path, config=config, model=net, epoch=0, metrics=[], data={})


def write_page(payload: dict, folder: Path, name: str = "explorer.html") -> str:
    """The rendered page written to `folder`; its file:// URL."""
    from vaelab.explorer.page import render

    path = folder / name
    path.write_text(render(payload), encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="session")
def conv_run(small_mnist, tmp_path_factory) -> Path:
    """A tiny convolutional run: latent 4, one dense layer of 16, channels 4 and 8, one epoch."""
    from vaelab.config import TrainConfig
    from vaelab.training import train

    path = tmp_path_factory.mktemp("runs") / "conv"
    train(TrainConfig(model="conv", data_dir=str(small_mnist), latent_size=4, hidden_size=[16], channels=(4, 8),
                      epochs=1), path, echo=lambda s: None)
    return path


@pytest.fixture(scope="session")
def payloads(trained_run, conv_run) -> dict:
    """Payloads (vaelab.explorer.export.payload) of the small trained mlp run and the tiny conv run."""
    from vaelab.checkpoint import load_run
    from vaelab.explorer.export import payload

    return {"mlp": payload(load_run(trained_run), n=300), "conv": payload(load_run(conv_run), n=300)}


@pytest.fixture(scope="session")
def pages(payloads, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pages")
    return {name: write_page(p, folder, f"{name}.html") for name, p in payloads.items()}


class Tab(Page):
    """An offline tab that opens explorer pages: ready once the page's script has set up window.vaelab."""

    def open(self, url: str, ready: str | None = "window.vaelab !== undefined"):
        return super().open(url, ready)

    def pixels(self, selector: str) -> list[int]:
        return self.page.eval_on_selector(
            selector, "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")


@pytest.fixture
def tab(browser):
    t = Tab(browser)
    yield t
    t.context.close()


# --- loading -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_page_loads_offline_without_errors(tab, pages, payloads, name):
    page = tab.open(pages[name])
    assert page.evaluate("window.vaelab.ready") is True
    assert tab.errors == [] and tab.blocked == []
    for view in VIEWS:
        assert page.locator(f"section#{view}").is_visible()
    info = page.inner_text("#info")
    assert payloads[name]["title"] in info and f"latent {payloads[name]['model']['args']['latent_size']}" in info
    assert f"dataset\n{payloads[name]['run']['config']['dataset']}" in info and "epoch" in info
    classes = payloads[name]["class_means"]["labels"]
    assert page.locator(".legend li").count() == len(classes)
    assert page.locator("#pca-sliders input[type=range]").count() == len(payloads[name]["pca"]["std"])


def test_scores_or_not_scored(tab, payloads, tmp_path):
    scored = tab.open(write_page(payloads["mlp"], tmp_path, "scored.html")).inner_text("#info")
    scores = payloads["mlp"]["run"]["scores"]
    assert scores is not None and "test ELBO" in scored
    assert (f"log p(x), K={scores['iw_k']}\n{scores['log_likelihood']:.2f} ± {scores['log_likelihood_stderr']:.2f} "
            "nats").replace("-", "\u2212") in scored
    assert "scored on" not in scored  # on the run's own test files
    elsewhere = {**payloads["mlp"], "run": {**payloads["mlp"]["run"], "scores": {**scores, "data_matches_run": False}}}
    assert ("scored on\nother test files than the run's own (vaelab eval --data-dir)"
            in tab.open(write_page(elsewhere, tmp_path, "elsewhere.html")).inner_text("#info"))
    unscored = {**payloads["mlp"], "run": {**payloads["mlp"]["run"], "scores": None}}
    assert "not scored yet" in tab.open(write_page(unscored, tmp_path, "unscored.html")).inner_text("#info")
    assert tab.errors == []


def test_the_run_panel_says_how_far_training_got(tab, payloads, tmp_path):
    run = payloads["mlp"]["run"]
    assert run["epoch"] == run["config"]["epochs"] == 3  # a finished run: its epoch alone
    done = tab.open(write_page(payloads["mlp"], tmp_path, "done.html")).inner_text("#info")
    assert f"epoch\n3 (step {run['step']})" in done
    cut = {**payloads["mlp"], "run": {**run, "epoch": 1, "step": 12, "config": {**run["config"], "epochs": 3280}}}
    info = tab.open(write_page(cut, tmp_path, "cut.html")).inner_text("#info")
    assert "epoch\n1 of 3,280 (step 12)" in info
    assert tab.errors == []


# --- interaction ---------------------------------------------------------------------
def test_slider_changes_decoded_image(tab, pages):
    page = tab.open(pages["mlp"])
    for panel in ("#pca-sliders", "#latent-sliders"):
        before = tab.pixels(f"{panel} canvas.img")
        page.eval_on_selector(f"{panel} input[type=range]",
                              "s => { s.value = s.max; s.dispatchEvent(new Event('input', {bubbles: true})); }")
        assert tab.pixels(f"{panel} canvas.img") != before, panel
    assert tab.errors == []


def test_sliders_say_their_values_on_screen_and_to_screen_readers(tab, pages):
    page = tab.open(pages["mlp"])
    assert page.get_attribute("#pca-sliders input[type=range]", "aria-valuetext") == "0.00"  # not a step's 1e-16
    z = page.locator("#latent-sliders input[type=range]").first
    z.focus()
    for _ in range(10):
        z.press("ArrowRight")
    shown = page.locator("#latent-sliders output.value").first.inner_text()
    value = float(z.input_value())
    assert shown == z.get_attribute("aria-valuetext") == f"{value:.2f}".replace("-", "\u2212")
    page.click("#latent-sliders button")  # reset: back to the mean, on screen too
    assert page.locator("#latent-sliders output.value").first.inner_text() == f"{float(z.input_value()):.2f}".replace(
        "-", "\u2212")
    assert tab.errors == []


def test_the_map_steps_through_the_test_images_from_the_keyboard(tab, pages):
    page = tab.open(pages["mlp"])
    page.focus("canvas.map")
    assert page.evaluate("document.activeElement.classList.contains('map')")  # reachable with Tab
    before = tab.pixels("#map canvas.img")
    page.keyboard.press("ArrowRight")
    assert "Test image #1 of the" in page.inner_text("#map") and tab.pixels("#map canvas.img") != before
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # before the first: round to the last
    last = int(page.locator("#between input[type=number]").first.get_attribute("max"))
    assert f"Test image #{last} of the" in page.inner_text("#map")
    assert tab.errors == []


def test_map_click_on_nothing_and_a_cleared_drawing_leave_nothing_stale(tab, pages):
    page = tab.open(pages["mlp"])
    box = page.locator("canvas.map").bounding_box()
    page.mouse.click(box["x"] + 2, box["y"] + 2)  # a corner: no test image within reach
    assert "No test image there" in page.inner_text("#map") and "Test image #" not in page.inner_text("#map")
    num = page.locator("#between input[type=number]").nth(1)
    num.fill("100000")
    num.press("Tab")  # out of range: shown as the image used
    assert num.input_value() == str(int(num.get_attribute("max")))
    assert tab.errors == []


def test_mix_and_between_respond(tab, pages):
    page = tab.open(pages["mlp"])
    before = tab.pixels("#mix canvas.img.l")
    page.eval_on_selector("#mix input[type=range]",
                          "s => { s.value = '1'; s.dispatchEvent(new Event('input', {bubbles: true})); }")
    assert tab.pixels("#mix canvas.img.l") != before
    before = tab.pixels("#between canvas.img.l")
    page.eval_on_selector("#between label.walk input",
                          "s => { s.value = '0'; s.dispatchEvent(new Event('input', {bubbles: true})); }")
    assert tab.pixels("#between canvas.img.l") != before
    assert tab.errors == []


def test_map_click_decodes_the_plane(tab, pages):
    page = tab.open(pages["mlp"])
    box = page.locator("canvas.map").bounding_box()
    page.mouse.click(box["x"] + 5, box["y"] + 5)  # a corner: far from most codes
    assert "plane (" in page.inner_text("#map")
    assert tab.errors == []


def test_hovering_a_point_names_the_image_by_its_place_in_the_test_files(tab, pages, payloads):
    import re

    page = tab.open(pages["mlp"])
    box = page.locator("canvas.map").bounding_box()
    said = None
    for fx in np.linspace(0.3, 0.7, 9):  # the codes gather near the middle of the map
        for fy in np.linspace(0.3, 0.7, 9):
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            said = re.search(r"Test image #(\d+) of the 300 shown \(number ([\d,]+) in the test files, from 0\): "
                             r"class (\S+)\. log p\(x\) ≈ (\u2212\d+\.\d\d) nats \(IW K=10, eval\.json\)\.",
                             page.inner_text("#map"))
            if said:
                break
        if said:
            break
    assert said, page.inner_text("#map")
    i, number = int(said[1]), int(said[2].replace(",", ""))
    test = payloads["mlp"]["test"]
    assert number == test["index"][i] and said[3] == payloads["mlp"]["classes"]["names"][test["labels"][i]]
    assert said[4] == f"{test['log_likelihood'][i]:.2f}".replace("-", "\u2212")  # the page's minus sign
    assert re.search(r"Latent dimensions \(\d+ active of 8 on the 300 test images shown\)", page.inner_text("body"))
    assert tab.errors == []


def draw_vertical_stroke(page):
    page.locator("canvas.pad").scroll_into_view_if_needed()
    box = page.locator("canvas.pad").bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2
    page.mouse.move(x, top)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(x, top + k * box["height"] * 0.03)
    page.mouse.up()


def test_drawing_yields_code_and_reconstruction(tab, pages, payloads):
    page = tab.open(pages["mlp"])
    map_before = tab.pixels("canvas.map")
    draw_vertical_stroke(page)
    seen = np.array(tab.pixels("#draw figure:nth-child(1) canvas"))[0::4]
    assert seen.max() == 255 and 20 <= (seen == 255).sum() <= 200  # a binarized vertical bar
    recon = np.array(tab.pixels("#draw figure:nth-child(2) canvas"))[0::4]
    assert recon.max() > 128  # something was reconstructed
    names = [payloads["mlp"]["classes"]["names"][c] for c in payloads["mlp"]["class_means"]["labels"]]
    guess = page.inner_text("#draw .guess")
    word = payloads["mlp"]["classes"]["word"]
    assert guess.startswith(f"Nearest {word} mean: ") and guess.split(": ")[1].split(" ")[0] in names
    assert tab.pixels("canvas.map") != map_before  # the drawing's marker
    page.click("#draw button")
    assert page.inner_text("#draw .guess") == "Nothing drawn yet."
    assert tab.errors == []


# --- the maths, against PyTorch ----------------------------------------------------------
def page_vs_torch(page, model, latent_size: int, images: torch.Tensor) -> tuple[float, float, float]:
    """Largest differences (decode probabilities, encode mean, encode variance) between page and model."""
    z = torch.randn(100, latent_size, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    got = np.array(page.evaluate("zs => zs.map(z => Array.from(window.vaelab.decode(z)))", z.tolist()))
    with torch.no_grad():
        want = torch.sigmoid(model.decode(z.float())).numpy()
        mu, var = model.encode(images.float())
    enc = page.evaluate("xs => xs.map(x => { const r = window.vaelab.encode(x); "
                        "return [Array.from(r.mu), Array.from(r.var)]; })", images.tolist())
    return (float(np.abs(got - want).max()), float(np.abs(np.array([e[0] for e in enc]) - mu.numpy()).max()),
            float(np.abs(np.array([e[1] for e in enc]) - var.numpy()).max()))


def test_images(payload: dict, n: int = 5) -> torch.Tensor:
    import base64

    h, w = payload["image_shape"]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(payload["test"]["images"]), np.uint8))
    return torch.tensor(bits[: n * h * w].reshape(n, h * w), dtype=torch.float32)


test_images.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_decode_and_encode_match_torch(tab, pages, payloads, trained_run, conv_run, name):
    from vaelab.checkpoint import load_run

    run = load_run({"mlp": trained_run, "conv": conv_run}[name])
    page = tab.open(pages[name])
    decode, mu, var = page_vs_torch(page, run.model, run.model.latent_size, test_images(payloads[name]))
    print(f"{name}: max |p_page - p_torch| {decode:.1e}, mu {mu:.1e}, var {var:.1e}")
    assert decode < 1e-4 and mu < 1e-4 and var < 1e-4


@pytest.mark.parametrize("model", ["mlp", "conv", "mlp2"])
def test_tanh_and_exp_variance_match_torch(tab, small_mnist, tmp_path, model):
    from vaelab.explorer.export import payload

    extra = {"conv": {"channels": (3, 5)}, "mlp2": {"lower_latent_size": 9, "upper_hidden_size": (7, 5)}}
    run = untrained_run(small_mnist, tmp_path, model, latent_size=6, hidden_size=[20, 12], activation="tanh",
                        variance="exp", **extra.get(model, {}))
    p = payload(run, n=20)
    page = tab.open(write_page(p, tmp_path))
    decode, mu, var = page_vs_torch(page, run.model, 6, test_images(p))
    assert decode < 1e-4 and mu < 1e-4 and var < 1e-4
    assert tab.errors == []


def test_decode_time_of_the_articles_model(tab, small_mnist, tmp_path):
    """The article's network (latent 48, hidden 96-96): a decode well under 5 ms, so sliders stay live."""
    from vaelab.explorer.export import payload

    times = {}
    for model in ("mlp", "conv"):
        page = tab.open(write_page(payload(untrained_run(small_mnist, tmp_path, model), n=50), tmp_path,
                                   f"{model}.html"))
        times[model] = page.evaluate("window.vaelab.decodeMs")
    print(f"median decode (50 runs): mlp {times['mlp']:.3f} ms, conv (channels 32-64) {times['conv']:.3f} ms")
    assert 0 <= times["mlp"] < 5
    assert tab.errors == []


# --- safety ----------------------------------------------------------------------------
def test_hostile_strings_render_as_text(tab, payloads, tmp_path):
    p = json.loads(json.dumps(payloads["mlp"]))
    p["title"] = HOSTILE
    p["run"]["config"]["dataset"] = "<img src=x onerror=window.pwned=2>"
    p["run"]["config"]["objective"] = "<b>bold</b>"
    p["classes"]["names"] = [f"<i>{c}</i>{HOSTILE}" for c in p["classes"]["names"]]
    page = tab.open(write_page(p, tmp_path))
    assert page.evaluate("window.vaelab.ready") is True
    assert page.evaluate("window.pwned") is None
    assert page.locator("img, i, b").count() == 0  # nothing was parsed as markup
    assert HOSTILE in page.inner_text("#info") and HOSTILE in page.inner_text("header .sub")
    assert "<img src=x onerror=window.pwned=2>" in page.inner_text("#info")
    assert f"<i>0</i>{HOSTILE}" in page.inner_text(".legend")
    assert page.title().startswith(HOSTILE)
    assert tab.errors == []


# --- looks -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def showcase(tmp_path_factory) -> str:
    """A run worth looking at: latent 16, 6 epochs on the bundled MNIST, scored, with PCA and t-SNE maps."""
    from threadpoolctl import threadpool_limits

    from vaelab.checkpoint import load_run
    from vaelab.config import TrainConfig
    from vaelab.evaluate import evaluate_run
    from vaelab.explorer.export import payload
    from vaelab.training import train

    path = tmp_path_factory.mktemp("runs") / "mnist-latent16"
    train(TrainConfig(latent_size=16, epochs=6), path, echo=lambda s: None)
    evaluate_run(path, iw_k=10)
    with threadpool_limits(1, user_api="openmp"):  # see conftest.one_openmp_thread
        p = payload(load_run(path), n=1000, embed=("pca", "tsne"))
    return write_page(p, tmp_path_factory.mktemp("showcase"))


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_every_view(browser, showcase, width):
    """Every view fits the width (no sideways scrolling); shots in /tmp/explorer-shots/ to look at."""
    tab = Tab(browser, width=width, height=900 if width > 500 else 844)
    try:
        page = tab.open(showcase)
        SHOTS.mkdir(exist_ok=True)
        draw_vertical_stroke(page)
        page.locator("canvas.map").scroll_into_view_if_needed()
        box = page.locator("canvas.map").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"page-{width}.png"), full_page=True)
        for view in VIEWS:
            page.locator(f"section#{view}").screenshot(path=str(SHOTS / f"{view}-{width}.png"))
        page.locator("header").screenshot(path=str(SHOTS / f"header-{width}.png"))
        assert tab.errors == []
    finally:
        tab.context.close()


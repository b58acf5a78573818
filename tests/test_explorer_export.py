"""The explorer's payload and page: the contract the script reads, weights that decode the same in numpy,
a page nothing from the run can break out of, and the `vaelab explore` command."""

import base64
import hashlib
import json
import os
import re
import shutil
import webbrowser

import numpy as np
import pytest
import torch

from conftest import csp_of, write_mnist
from vaelab import latent
from vaelab.checkpoint import load_run
from vaelab.cli import main
from vaelab.config import TrainConfig
from vaelab.data import binarize_threshold, load_split
from vaelab.errors import VaelabError
from vaelab.evalfile import read_eval
from vaelab.evaluate import evaluate_run
from vaelab.explorer import page as page_module
from vaelab.explorer.export import FORMAT, payload
from vaelab.explorer.page import render, script_safe_json, write_explorer
from vaelab.files import dumps
from vaelab.rundir import RunDir
from vaelab.training import train

EVIL = "</script><script>alert(1)</script>"
JSON_ELEMENT = re.compile(r'<script type="application/json" id="vaelab-data">(.*?)</script>', re.S)


def _floats(text: str, *shape: int) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return data.reshape(shape) if shape else data


def _tensors(p: dict) -> dict[str, np.ndarray]:
    return {key: _floats(t["data"], *t["shape"]) for key, t in p["model"]["tensors"].items()}


def _json_of(page: str) -> dict:
    found = JSON_ELEMENT.findall(page)
    assert len(found) == 1
    return json.loads(found[0])


@pytest.fixture(scope="module")
def run(trained_run):
    return load_run(trained_run)


@pytest.fixture(scope="module")
def exported(run):
    return payload(run, n=200, seed=3)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """The shared small run's training files only: not the pages other tests (the report's) may have written."""
    return shutil.copytree(trained_run, tmp_path / "run",
                           ignore=shutil.ignore_patterns("explorer.html", "report.html", "figures"))


@pytest.fixture(scope="module")
def conv_run(small_mnist, tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "conv"
    train(TrainConfig(model="conv", data_dir=str(small_mnist), latent_size=4, hidden_size=(16,), channels=(4, 8),
                      epochs=1), path, echo=lambda s: None)
    return path


# ----------------------------------------------------------------------------- the contract


def test_payload_has_every_key_of_the_contract(run, exported, small_mnist):
    p = exported
    n, size, h, w = 200, run.model.latent_size, 28, 28
    assert set(p) == {"format", "title", "run", "model", "image_shape", "classes", "test", "maps", "pca", "latent",
                      "class_means"}
    assert p["format"] == FORMAT and p["title"] == run.path.name
    assert p["run"]["path"] == os.path.abspath(run.path)
    assert (p["run"]["epoch"], p["run"]["step"], p["run"]["weights_sha256"]) == (run.epoch, run.step,
                                                                                  run.weights_sha256)
    assert p["run"]["config"] == run.config.to_dict()
    scores = read_eval(run)
    assert p["run"]["scores"] == {"elbo": scores.elbo, "elbo_stderr": scores.elbo_stderr,
                                  "log_likelihood": scores.log_likelihood,
                                  "log_likelihood_stderr": scores.log_likelihood_stderr, "iw_k": scores.iw_k,
                                  "data_matches_run": True,
                                  "active_units": scores.active_units, "n_images": scores.n_images}
    assert p["model"]["name"] == "mlp"
    assert p["model"]["args"] == {"image_shape": [28, 28], "latent_size": size, "hidden": [16, 16],
                                  "activation": "relu", "variance": "softplus"}
    state = run.model.state_dict()
    tensors = _tensors(p)
    assert list(tensors) == list(state)
    for key, value in state.items():
        assert np.array_equal(tensors[key], value.numpy())  # float32, bit for bit
    assert p["image_shape"] == [h, w]
    assert p["classes"] == {"names": [str(i) for i in range(10)], "word": "class"}  # a folder: numbered classes

    test = p["test"]
    assert test["n"] == n and len(test["labels"]) == n and all(isinstance(c, int) for c in test["labels"])
    bits = np.frombuffer(base64.b64decode(test["images"]), dtype=np.uint8)
    assert len(bits) == (n * h * w + 7) // 8
    images = np.unpackbits(bits)[: n * h * w].reshape(n, h * w)
    split = load_split("test", small_mnist)
    whole = binarize_threshold(split.images).numpy().astype(np.uint8)  # as `vaelab eval` sees them
    rows = {(row.tobytes(), int(label)) for row, label in zip(whole, split.labels.tolist(), strict=True)}
    assert all((image.tobytes(), label) in rows for image, label in zip(images, test["labels"], strict=True))
    assert len(test["index"]) == n == len(set(test["index"])) and all(isinstance(i, int) for i in test["index"])
    assert all(np.array_equal(image, whole[i]) and label == int(split.labels[i])  # its place in the test files
               for image, label, i in zip(images, test["labels"], test["index"], strict=True))
    assert len({image.tobytes() for image in images}) > n * 0.95  # a subset, not one image repeated
    mu = _floats(test["mu"], n, size)
    expected, var = latent.encode_all(run.model, torch.from_numpy(images.astype(np.float32)))
    assert np.array_equal(mu, expected.numpy())

    assert set(p["maps"]) == {"pca"} and _floats(p["maps"]["pca"]).shape == (n * 2,)
    pca = p["pca"]
    assert len(pca["mean"]) == size and np.shape(pca["components"]) == (8, size) and len(pca["std"]) == 8
    assert pca["std"] == sorted(pca["std"], reverse=True)

    kl = latent.kl_per_dimension(expected.double(), var.double()).numpy()
    assert np.allclose(p["latent"]["kl"], kl, rtol=1e-12)
    assert p["latent"]["order"] == np.argsort(-kl, kind="stable").tolist()
    assert p["latent"]["active"] == latent.active_units(expected).tolist()
    assert np.allclose(p["latent"]["std"], mu.astype(np.float64).std(0, ddof=1))

    labels = np.array(test["labels"])
    present = sorted(set(test["labels"]))
    assert p["class_means"]["labels"] == present
    assert np.allclose(p["class_means"]["means"], [mu[labels == c].mean(0) for c in present], atol=1e-6)
    assert json.loads(dumps(p)) == p  # strict JSON: every float finite


def test_payload_is_seeded_and_takes_at_most_the_test_set(run, exported):
    assert payload(run, n=200, seed=3)["test"] == exported["test"]
    assert payload(run, n=200, seed=4)["test"]["labels"] != exported["test"]["labels"]
    assert payload(run, n=10_000)["test"]["n"] == 500  # the small test set holds 500 images


@pytest.mark.parametrize("n", [9, 10_001])
def test_payload_refuses_sizes_out_of_range(run, n):
    with pytest.raises(VaelabError, match="-n must be from 10 to 10,000 test images"):
        payload(run, n=n)


def test_each_image_carries_eval_jsons_estimate_of_it_when_that_scored_these_pixels(run, exported, small_mnist,
                                                                                    tmp_path):
    per_image = read_eval(run).log_likelihood_per_image
    assert len(per_image) == 500 and exported["test"]["log_likelihood"] == [per_image[i]
                                                                           for i in exported["test"]["index"]]
    # a dynamic run: only the estimates of the pixels drawn here, which eval.json names
    dynamic = tmp_path / "dynamic"
    train(TrainConfig(data_dir=str(small_mnist), latent_size=4, hidden_size=16, epochs=1, binarization="dynamic"),
          dynamic, echo=lambda s: None)
    evaluate_run(dynamic, iw_k=3, judge=False)
    shown = payload(load_run(dynamic), n=10, seed=5)["test"]
    scored = json.loads((dynamic / "eval.json").read_text())
    assert scored["test_pixels"] == "seed 0 on cpu" and shown["log_likelihood"] == [
        scored["log_likelihood_per_image"][i] for i in shown["index"]]
    (dynamic / "eval.json").write_text(json.dumps({**scored, "test_pixels": "seed 0 on cuda"}))  # a GPU's draw
    assert payload(load_run(dynamic), n=10, seed=5)["test"]["log_likelihood"] is None
    del scored["test_pixels"]  # written before eval.json said which draw it scored
    (dynamic / "eval.json").write_text(json.dumps(scored))
    assert payload(load_run(dynamic), n=10, seed=5)["test"]["log_likelihood"] is None


def test_scores_are_null_when_eval_json_scores_other_weights(run_copy):
    scores = json.loads((run_copy / "eval.json").read_text())
    (run_copy / "eval.json").write_text(json.dumps({**scores, "weights_sha256": "0" * 64}))
    assert payload(load_run(run_copy), n=10)["run"]["scores"] is None
    assert payload(load_run(run_copy), n=10)["test"]["log_likelihood"] is None
    assert json.loads((run_copy / "eval.json").read_text())["weights_sha256"] == "0" * 64  # never scored here


def _numpy_mlp(tensors: dict[str, np.ndarray], prefix: str, h: np.ndarray) -> np.ndarray:
    """The article's perceptron as the page runs it: Linear layers with ReLU between them."""
    n_layers = sum(1 for key in tensors if key.startswith(prefix) and key.endswith(".weight"))
    for i in range(1, n_layers + 1):
        h = h @ tensors[f"{prefix}.layer{i}.weight"].T.astype(np.float64) + tensors[f"{prefix}.layer{i}.bias"]
        if i < n_layers:
            h = np.maximum(h, 0.0)
    return h


def test_numpy_reproduces_the_decoder_and_the_encoder(run, exported):
    tensors = _tensors(exported)
    z = torch.randn(100, run.model.latent_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = torch.sigmoid(run.model.decode(z)).numpy()
    pixels = 1 / (1 + np.exp(-_numpy_mlp(tensors, "decoder", z.numpy().astype(np.float64))))
    assert np.abs(pixels - expected).max() < 1e-6

    n, size = exported["test"]["n"], run.model.latent_size
    images = np.unpackbits(np.frombuffer(base64.b64decode(exported["test"]["images"]), dtype=np.uint8))
    images = images[: n * 784].reshape(n, 784).astype(np.float64)
    mu = _numpy_mlp(tensors, "encoder", images)[:, :size]  # the first half: the means
    assert np.abs(mu - _floats(exported["test"]["mu"], n, size)).max() < 1e-5


def test_pca_map_is_the_projection_on_the_first_two_directions(run, exported):
    n, size = exported["test"]["n"], run.model.latent_size
    mu = _floats(exported["test"]["mu"], n, size).astype(np.float64)
    pca = {key: np.array(value) for key, value in exported["pca"].items()}
    points = _floats(exported["maps"]["pca"], n, 2)
    assert np.allclose(points, (mu - pca["mean"]) @ pca["components"][:2].T, rtol=1e-6, atol=1e-7)
    assert np.allclose(pca["components"] @ pca["components"].T, np.eye(8), atol=1e-9)  # orthonormal
    assert np.allclose(pca["mean"], mu.mean(0))
    assert np.allclose(pca["std"], ((mu - pca["mean"]) @ pca["components"].T).std(0, ddof=1))
    assert np.allclose(np.square(pca["std"][:2]).sum(), points.astype(np.float64).var(0, ddof=1).sum(), rtol=1e-5)
    # the principal directions themselves, not any orthonormal basis: the spreads along them are the covariance's
    # eigenvalues, largest first, and each direction is an eigenvector, signed so its largest entry is positive
    values, vectors = np.linalg.eigh(np.cov(mu, rowvar=False))
    assert np.allclose(np.square(pca["std"]), values[::-1][:8], rtol=1e-6)
    for component, vector in zip(pca["components"], vectors.T[::-1][:8], strict=True):
        assert np.allclose(np.abs(component @ vector), 1, atol=1e-6)
        assert component[np.abs(component).argmax()] > 0


def test_other_maps_only_when_asked(run, one_openmp_thread):
    p = payload(run, n=60, embed=("pca", "tsne"))
    assert set(p["maps"]) == {"pca", "tsne"} and _floats(p["maps"]["tsne"]).shape == (120,)
    with pytest.raises(VaelabError, match="unknown map 'mds'"):
        payload(run, n=60, embed=("mds",))


def test_a_conv_run_exports_weights_that_decode_the_same(conv_run):
    run = load_run(conv_run)
    p = payload(run, n=50)
    assert p["model"]["name"] == "conv"
    assert p["model"]["args"] == {"image_shape": [28, 28], "latent_size": 4, "hidden": [16], "activation": "relu",
                                  "variance": "softplus", "channels": [4, 8]}
    t = {key: value.astype(np.float64) for key, value in _tensors(p).items()}
    assert t["decoder.deconv1.weight"].shape == (8, 4, 4, 4)  # ConvTranspose2d: (in, out, kernel, kernel)
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = torch.sigmoid(run.model.decode(z)).numpy()
    h = np.maximum(z.numpy() @ t["decoder.layer1.weight"].T + t["decoder.layer1.bias"], 0)
    h = np.maximum(h @ t["decoder.layer2.weight"].T + t["decoder.layer2.bias"], 0).reshape(100, 8, 7, 7)
    h = np.maximum(_conv_transpose(h, t["decoder.deconv1.weight"], t["decoder.deconv1.bias"]), 0)
    logits = _conv_transpose(h, t["decoder.deconv2.weight"], t["decoder.deconv2.bias"])
    assert np.abs(1 / (1 + np.exp(-logits.reshape(100, 784))) - expected).max() < 1e-6


def _conv_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ConvTranspose2d(kernel 4, stride 2, padding 1): (B, I, S, S) -> (B, O, 2S, 2S)."""
    b, _, s, _ = x.shape
    full = np.zeros((b, weight.shape[1], 2 * s + 2, 2 * s + 2))
    for ky in range(4):
        for kx in range(4):
            full[:, :, ky:ky + 2 * s:2, kx:kx + 2 * s:2] += np.einsum("bihw,io->bohw", x, weight[:, :, ky, kx])
    return full[:, :, 1:-1, 1:-1] + bias[None, :, None, None]


# ----------------------------------------------------------------------------- the page


def test_json_is_escaped_for_a_script_element():
    obj = {"a": f"{EVIL}<!--\u2028\u2029&'\"", EVIL: [1.5, None, True]}
    text = script_safe_json(obj)
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == obj


def test_nothing_from_the_run_leaves_the_script_element(small_mnist, tmp_path):
    hostile = f'x{EVIL}"\'&\u2028\u2029'  # slashes make folders: x<, script><script>alert(1)<, script>"'&...
    data = shutil.copytree(small_mnist, tmp_path / f"data{hostile}")
    names = [EVIL, '"quoted"', "it's", "a&b", "<!--", "-->", "\u00e9t\u00e9", "<b>7</b>", "8", "9"]
    (data / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    path = tmp_path / f"run{hostile}"
    train(TrainConfig(data_dir=str(data), latent_size=2, hidden_size=8, epochs=1), path, echo=lambda s: None)
    page = write_explorer(path, n=20).read_text(encoding="utf-8")
    assert "</script><script>alert(1)" not in page and "<script>alert" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert page.count("<style") == 1 and page.count("</style>") == 1
    p = _json_of(page)
    assert p["classes"]["names"] == names
    assert p["run"]["config"]["data_dir"] == str(data)
    assert p["run"]["path"] == os.path.abspath(path)
    assert p["title"] == path.name == 'script>"\'&\u2028\u2029'
    assert "<title>script&gt;&#34;&#39;&amp;\u2028\u2029 · vaelab explorer</title>" in page
    assert not set(JSON_ELEMENT.findall(page)[0]) & set("<>&\u2028\u2029")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_csp_allows_exactly_the_inline_script_and_style(exported):
    page = render(exported)
    csp = csp_of(page)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert csp == {"default-src": "'none'", "script-src": _sha256(scripts[0]), "style-src": _sha256(styles[0]),
                   "img-src": "data: blob:", "base-uri": "'none'", "form-action": "'none'"}
    assert scripts[0] == page_module._static("explorer.js") and styles[0] == page_module._static("explorer.css")


def test_the_page_loads_nothing_from_outside(exported):
    page = render(exported)
    assert not re.search(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|@import""", page, re.I)
    assert not re.search(r"""(?:fetch|importScripts|import)\s*\(\s*["'`]\s*(?:https?:)?//""", page)
    assert _json_of(page) == exported


def test_a_script_that_would_close_its_element_is_refused(exported, monkeypatch):
    real = page_module._static
    monkeypatch.setattr(page_module, "_static", lambda name: "x = '</SCRIPT>';" if name.endswith(".js") else real(name))
    with pytest.raises(ValueError, match="explorer.js contains '</script'"):
        render(exported)


def test_the_article_model_makes_a_page_under_3_mb(tmp_path):
    data = write_mnist(tmp_path / "data", 1000, 1000)
    path = tmp_path / "article"
    train(TrainConfig(data_dir=str(data), epochs=1), path, echo=lambda s: None)  # latent 48, hidden 96, 96
    written = write_explorer(path)
    p = _json_of(written.read_text())
    assert p["test"]["n"] == 1000 and p["model"]["args"]["hidden"] == [96, 96]
    assert written.stat().st_size < 3_000_000


# ----------------------------------------------------------------------------- the command


def test_explore_writes_the_page_into_the_run(run_copy, capsys):
    assert main(["explore", str(run_copy), "-n", "50"]) == 0
    out = capsys.readouterr().out
    path = run_copy / "explorer.html"
    size = path.stat().st_size / 1e6
    assert out == f"wrote {path} ({size:.1f} MB); open it in any browser, no server needed\n"
    assert _json_of(path.read_text())["test"]["n"] == 50
    with RunDir.existing(run_copy):  # as `vaelab train --resume` holds it
        assert main(["explore", str(run_copy), "-n", "10"]) == 0
    if os.path.exists("/proc/locks"):
        assert capsys.readouterr().out.splitlines()[1] == (
            f"  {run_copy} is still training (pid {os.getpid()}): the page is its checkpoint of when it was "
            "written; later checkpoints are not in it")


def test_explore_out_may_be_a_folder_or_an_html_file(run_copy, tmp_path, capsys):
    folder = tmp_path / "pages"
    folder.mkdir()
    assert main(["explore", str(run_copy), "--out", str(folder), "-n", "10"]) == 0
    assert (folder / "explorer.html").is_file() and not (run_copy / "explorer.html").exists()
    assert main(["explore", str(run_copy), "--out", str(folder / "mine.html"), "-n", "10"]) == 0
    assert (folder / "mine.html").is_file()
    assert capsys.readouterr().out.count("wrote ") == 2


@pytest.mark.parametrize("out", ["page.png", "nowhere"])
def test_explore_refuses_an_out_that_is_no_html_file(run_copy, capsys, monkeypatch, out):
    monkeypatch.chdir(run_copy.parent)
    assert main(["explore", str(run_copy), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err == (f"vaelab: error: --out {out} must end in .html or name an existing folder; the explorer is one "
                   "HTML page\n")
    assert not (run_copy / "explorer.html").exists() and not (run_copy.parent / out).exists()


@pytest.mark.parametrize("n", ["9", "10001", "many"])
def test_explore_refuses_sizes_out_of_range(run_copy, capsys, n):
    with pytest.raises(SystemExit):
        main(["explore", str(run_copy), "-n", n])
    assert f"argument -n: must be an integer from 10 to 10,000, got {n}" in capsys.readouterr().err


def test_explore_replaces_a_planted_link_instead_of_following_it(run_copy, tmp_path, capsys):
    victim = tmp_path / "victim.html"
    victim.write_text("keep me")
    (run_copy / "explorer.html").symlink_to(victim)
    assert main(["explore", str(run_copy), "-n", "10"]) == 0
    assert victim.read_text() == "keep me"
    assert not (run_copy / "explorer.html").is_symlink() and (run_copy / "explorer.html").is_file()


def test_explore_out_in_the_run_folder_replaces_a_planted_link_too(run_copy, tmp_path, capsys):
    victim = tmp_path / "victim.html"
    victim.write_text("keep me")
    (run_copy / "mine.html").symlink_to(victim)
    assert main(["explore", str(run_copy), "--out", str(run_copy / "mine.html"), "-n", "10"]) == 0
    assert victim.read_text() == "keep me" and not (run_copy / "mine.html").is_symlink()


def test_explore_open_opens_the_file_in_a_browser(run_copy, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert main(["explore", str(run_copy), "-n", "10", "--open"]) == 0
    uri = (run_copy / "explorer.html").absolute().as_uri()
    assert opened == [uri] and "--open" not in capsys.readouterr().out
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)  # no browser on this machine
    assert main(["explore", str(run_copy), "-n", "10", "--open"]) == 0
    assert capsys.readouterr().out.endswith(f"  --open: no browser found on this machine; open {uri} in one\n")


def test_explore_map_adds_a_t_sne_of_the_same_codes_as_a_tab(run_copy, tmp_path, capsys):
    out = tmp_path / "maps.html"
    assert main(["explore", str(run_copy), "--out", str(out), "-n", "40", "--map", "tsne", "--map", "tsne"]) == 0
    maps = _json_of(out.read_text())["maps"]
    assert sorted(maps) == ["pca", "tsne"]  # PCA always; t-SNE once, however often asked
    pca, tsne = _floats(maps["pca"], 40, 2), _floats(maps["tsne"], 40, 2)
    assert np.isfinite(tsne).all() and not np.allclose(tsne, pca) and tsne.std(0).min() > 0
    assert main(["explore", str(run_copy), "--out", str(tmp_path / "plain.html"), "-n", "40"]) == 0
    assert list(_json_of((tmp_path / "plain.html").read_text())["maps"]) == ["pca"]  # without --map, as before


def test_explore_a_conv_run(conv_run, tmp_path, capsys):
    assert main(["explore", str(conv_run), "--out", str(tmp_path / "conv.html"), "-n", "30", "--seed", "2"]) == 0
    p = _json_of((tmp_path / "conv.html").read_text())
    assert p["model"]["name"] == "conv" and p["test"]["n"] == 30


def test_explore_of_a_run_that_is_not_there(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and err.count("\n") == 1

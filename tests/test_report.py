"""The HTML report: self-contained, complete, and honest about missing scores."""

import base64
import json
import re
import shutil

import pytest

from vaelab.checkpoint import load_run
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.report import _render, read_scores, write_report


def test_report_embeds_every_figure_and_the_scores(trained_run, capsys):
    assert main(["report", str(trained_run), "--embed", "pca", "--n-stats", "500"]) == 0
    out = capsys.readouterr().out
    path = trained_run / "report.html"
    assert f"report written to {path}" in out
    page = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 9  # curves, reconstructions, per-class samples, prior, mix, 2 strips, map, KL
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert not re.search(r'(src|href)="https?:', page)  # nothing to fetch: it opens offline
    for title in ("Training curves", "Reconstructions", "New digits of each class", "Samples from the prior",
                  "Mixing digits", "Interpolating", "Map of the latent space", "Posterior collapse"):
        assert title in page
    scores = json.loads((trained_run / "eval.json").read_text())
    assert f"{scores['elbo']:.2f}" in page and f"{scores['log_likelihood']:.2f}" in page
    assert "latent_size" in page and "binarization" in page
    assert {p.name for p in (trained_run / "figures").iterdir()} >= {
        "curves.png", "embed.png", "generate.png", "interpolate.png", "interpolate-slerp.png", "kl.png",
        "mix.png", "prior.png", "reconstruct.png"}


def test_report_needs_current_test_scores(trained_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / "eval.json").unlink()
    with pytest.raises(VaelabError, match=r"no test scores yet; run `vaelab eval"):
        write_report(copy, embed_method="pca")
    scores = json.loads((trained_run / "eval.json").read_text())
    (copy / "eval.json").write_text(json.dumps({**scores, "epoch": 1}))
    with pytest.raises(VaelabError, match="scores epoch 1 but the run is at epoch 3"):
        read_scores(load_run(copy))
    (copy / "eval.json").write_text("{not json")
    with pytest.raises(VaelabError, match="damaged"):
        read_scores(load_run(copy))


def test_collapse_warning_only_when_most_units_are_inactive(trained_run):
    run = load_run(trained_run)
    scores = json.loads((trained_run / "eval.json").read_text())
    assert "collapsed" in _render(run, {**scores, "active_units": 3}, [])
    assert "collapsed" not in _render(run, {**scores, "active_units": 5}, [])

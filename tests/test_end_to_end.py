"""The article's run on the full bundled MNIST, scored on the test set (slow: ~45 s)."""

import json

import pytest

from vaelab.cli import main

# The article's own training loop, run here on the same data (the article's maths
# verbatim, bundled MNIST, 10 epochs), reaches a test ELBO of -101.37, -101.83 and
# -100.44 for seeds 0, 1, 2 (docs/benchmarks.md). vaelab must do at least as well
# as that code's worst seed.
ARTICLE_CODE_WORST_ELBO = -101.83
IW_K1000_FLOOR = -95.3


@pytest.mark.slow
def test_the_articles_run_reaches_the_articles_quality(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--seed", "0", "--quiet"]) == 0
    log = capsys.readouterr().out
    rows = [line.split() for line in log.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 11))

    assert main(["eval", str(run), "--iw-k", "1000", "--seed", "0", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_images"] == 10000 and scores["epoch"] == 10
    assert scores["elbo"] >= ARTICLE_CODE_WORST_ELBO
    assert scores["log_likelihood"] >= IW_K1000_FLOOR
    assert scores["log_likelihood"] - scores["elbo"] > 3  # K=1000 is much tighter than the ELBO
    assert scores["elbo_stderr"] < 0.5 and scores["log_likelihood_stderr"] < 0.5

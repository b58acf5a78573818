"""The article's configuration gives the numbers it gave before vaelab grew past the article, to the last digit.

The expected values (tests/data/article-expected.json) were computed by vaelab 39d2e1b, the last version with
one network, one loss and one dataset. They depend on the CPU's instruction set (PyTorch's kernels sum in a
different order with AVX-512 than with AVX2), so they are kept per capability; on a machine whose capability has
no stored values, run this file as a script on the old code to add them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

EXPECTED = Path(__file__).parent / "data" / "article-expected.json"


def _train_and_score(folder: Path) -> dict:
    from conftest import write_mnist
    from vaelab.config import TrainConfig
    from vaelab.evaluate import evaluate_run
    from vaelab.training import train

    data = write_mnist(folder / "data", 2000, 500)
    run = train(TrainConfig(data_dir=str(data), epochs=2, device="cpu"), folder / "run", echo=lambda s: None)
    scores = evaluate_run(folder / "run", iw_k=20, device="cpu")
    return {"torch": torch.__version__,
            "metrics": [{k: m[k] for k in ("reg", "loglike", "lower_bound", "test_elbo", "step")}
                        for m in run.metrics],
            "weights_sha256": run.weights_sha256, "eval_elbo": scores.elbo, "eval_iw": scores.log_likelihood}


def test_the_articles_configuration_gives_the_numbers_it_gave_before(tmp_path):
    capability = torch.backends.cpu.get_cpu_capability()
    stored = json.loads(EXPECTED.read_text())["by_capability"]
    if capability not in stored or stored[capability]["torch"] != torch.__version__:
        known = ", ".join(f"{c} with torch {values['torch']}" for c, values in stored.items())
        pytest.skip(f"no stored values for torch {torch.__version__} on a {capability} CPU (stored: {known})")
    assert _train_and_score(tmp_path) == stored[capability]  # floats compared exactly


if __name__ == "__main__":  # print this machine's values, to add them to the file
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps({torch.backends.cpu.get_cpu_capability(): _train_and_score(Path(tempfile.mkdtemp()))}, indent=1))

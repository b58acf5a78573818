"""vaelab: train variational autoencoders on MNIST-like images and explore them.

The public API, importable without side effects::

    from vaelab import TrainConfig, train, load_run, evaluate_run

    run = train(TrainConfig(epochs=10), "runs/mnist")
    scores = evaluate_run(run.path, iw_k=1000)

Names are imported on first use (PEP 562), so `import vaelab` (and the `vaelab`
command before it parses its arguments) does not wait for PyTorch to load.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the command starts sooner

_EXPORTS = {
    "Run": "vaelab.checkpoint",
    "load_run": "vaelab.checkpoint",
    "TrainConfig": "vaelab.config",
    "VaelabError": "vaelab.errors",
    "EvalResult": "vaelab.evalfile",
    "evaluate_run": "vaelab.evaluate",
    "VAE": "vaelab.model",
    "MODELS": "vaelab.models",
    "VAEModel": "vaelab.models",
    "build_model": "vaelab.models",
    "train": "vaelab.training",
}
__all__ = ["MODELS", "EvalResult", "Run", "TrainConfig", "VAE", "VAEModel", "VaelabError", "build_model",
           "evaluate_run", "load_run", "train"]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from vaelab.checkpoint import Run, load_run
    from vaelab.config import TrainConfig
    from vaelab.errors import VaelabError
    from vaelab.evalfile import EvalResult
    from vaelab.evaluate import evaluate_run
    from vaelab.model import VAE
    from vaelab.models import MODELS, VAEModel, build_model
    from vaelab.training import train


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

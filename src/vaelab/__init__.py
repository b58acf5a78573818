"""vaelab: train variational autoencoders on MNIST-like images and explore them.

The public API, importable without side effects::

    from vaelab import TrainConfig, train, load_run, evaluate_run

    run = train(TrainConfig(epochs=10), "runs/mnist")
    scores = evaluate_run(run.path, iw_k=1000)
"""

from vaelab.checkpoint import Run, load_run
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.evaluate import EvalResult, evaluate_run
from vaelab.model import VAE
from vaelab.training import train

__all__ = [
    "Run",
    "TrainConfig",
    "VAE",
    "VaelabError",
    "EvalResult",
    "evaluate_run",
    "load_run",
    "train",
]
__version__ = "0.1.0"

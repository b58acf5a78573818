"""Whether a model's steps replayed as a CUDA graph give the eager steps' bits: a check to run on a GPU
before adding a model to vaelab.steps.GRAPHED_MODELS.

    python3 bench/graph_check.py [--model conv] [--steps 60]

Trains two copies of the model from the same seed on the same batches of 20 dynamically binarized
MNIST images, one eagerly and one as graph replays (vaelab.steps.Stepper), with the device chosen by
vaelab.device.resolve_device (on CUDA: deterministic cuDNN kernels), and prints, step by step until the
first difference, whether the weights are still equal, then a verdict. Exit status 0 when equal throughout.
"""

from __future__ import annotations

import argparse
import sys

import torch

from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.device import make_generator, resolve_device
from vaelab.steps import Stepper
from vaelab.training import build_model, build_objective, build_optimizer, sums_size, train_step


def session(config: TrainConfig, x_grey: torch.Tensor, graphs: bool) -> Stepper:
    device = x_grey.device
    torch.manual_seed(config.seed)
    model = build_model(config, (28, 28), x_grey.mean(0).double().cpu()).to(device)

    def batch(index, gen):
        return torch.bernoulli(x_grey.index_select(0, index), generator=gen)

    return Stepper(train_step, batch, model, build_optimizer(config, model, device), build_objective(config),
                   make_generator(device, config.seed), sums_size(config), graphs=graphs,
                   batch_size=config.batch_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="conv")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    device = resolve_device("cuda")
    config = TrainConfig(model=args.model, batch_size=20, binarization="dynamic", epochs=None)
    x_grey = grey_levels(load_split("train").images[:2000]).to(device)
    eager, graphed = session(config, x_grey, graphs=False), session(config, x_grey, graphs=True)
    perm = torch.randperm(len(x_grey), generator=torch.Generator().manual_seed(1)).to(device)
    for step in range(args.steps):
        index = perm[step * 20:(step + 1) * 20]
        e_sums, g_sums = eager(index), graphed(index)
        same = torch.equal(e_sums, g_sums) and all(
            torch.equal(p, q) for p, q in zip(eager.model.parameters(), graphed.model.parameters(), strict=True))
        if not same:
            worst = max((p - q).abs().max().item()
                        for p, q in zip(eager.model.parameters(), graphed.model.parameters(), strict=True))
            print(f"{args.model}: step {step + 1} differs (largest weight difference {worst:.3g}); "
                  f"graph captures {graphed.captures}, replays {graphed.replays}")
            return 1
    print(f"{args.model}: {args.steps} steps equal to the last bit (graph captures {graphed.captures}, "
          f"replays {graphed.replays}; cudnn.deterministic={torch.backends.cudnn.deterministic})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Steps per second of the IWAE presets' one-layer model: vaelab's training step against a plain eager loop.

    .venv/bin/python bench/bench_steps.py [--steps 2000] [--samples 1 5 50] [--device cpu]

The paper's schedule is 3,280 passes of 2,980 steps of batch 20 (9.8 million
steps), so per-step overhead, not arithmetic, sets its time. For each K this
times, side by side in one process and on the same data:

- vaelab: the step `vaelab train` runs (dynamic binarization of a batch sliced
  from the training tensor, `training.train_step` with the preset's objective and
  its Adam, and the epoch's running sums), from the preset's config;
- plain: the same maths written as a plain eager PyTorch loop, the way the
  PyTorch examples write it: `nn.Sequential` networks, `torch.distributions`-free
  but unfused arithmetic, `torch.optim.Adam` with its defaults (foreach).

Prints steps per second for both and their ratio. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.presets import load_preset
from vaelab.training import build_model, build_objective, build_optimizer, train_step


def plain_loop(x_grey: torch.Tensor, k: int, iwae: bool, steps: int, generator: torch.Generator) -> float:
    """Seconds for `steps` steps of the same model and objective, written plainly."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 100))
    dec = nn.Sequential(nn.Linear(50, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 784))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, betas=(0.99, 0.999), eps=5e-6)
    n = len(x_grey)
    start = time.perf_counter()
    perm = torch.randperm(n, generator=generator)
    for step in range(steps):
        b = step % (n // 20)
        x = torch.bernoulli(x_grey[perm[b * 20:(b + 1) * 20]], generator=generator)
        h = enc(x)
        mu, log_sigma = h[:, :50], h[:, 50:]
        sigma = torch.exp(log_sigma)
        eps = torch.randn((k, *mu.shape), generator=generator)
        z = mu + sigma * eps
        logits = dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = -0.5 * (math.log(2 * math.pi) + z.pow(2)).sum(-1)
        log_qz = -0.5 * (math.log(2 * math.pi) + 2 * log_sigma + eps.pow(2)).sum(-1)
        log_w = log_px + log_pz - log_qz
        bound = torch.logsumexp(log_w, 0) - math.log(k) if iwae else log_w.mean(0)
        loss = -bound.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def vaelab_loop(x_grey: torch.Tensor, config: TrainConfig, steps: int, generator: torch.Generator) -> float:
    """Seconds for `steps` of vaelab's training step, with the loop's batching and running sums."""
    model = build_model(config, (28, 28), x_grey.mean(0).double())
    optimizer = build_optimizer(config, model, torch.device("cpu"))
    objective = build_objective(config)
    sums = torch.zeros(3, dtype=torch.float64)
    n = len(x_grey)
    start = time.perf_counter()
    perm = torch.randperm(n, generator=generator)
    for step in range(steps):
        b = step % (n // 20)
        x = torch.bernoulli(x_grey.index_select(0, perm[b * 20:(b + 1) * 20]), generator=generator)
        terms = train_step(model, optimizer, x, generator, objective)
        sums += torch.stack([-terms.kl.sum(), terms.loglike.sum(), terms.value.sum()]).double()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 50])
    args = parser.parse_args()
    x_grey = grey_levels(load_split("train").images)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.steps} steps of batch 20 each")
    print(f"{'cell':>10} {'vaelab steps/s':>15} {'plain steps/s':>14} {'ratio':>6}")
    for k in args.samples:
        for name in (f"vae-k{k}", f"iwae-k{k}") if k > 1 else ("vae-k1",):
            config = TrainConfig.from_dict({**load_preset(f"iwae/1-layer/{name}"), "epochs": None})
            ours = vaelab_loop(x_grey, config, args.steps, torch.Generator().manual_seed(0))
            plain = plain_loop(x_grey, k, name.startswith("iwae"), args.steps, torch.Generator().manual_seed(0))
            print(f"{name:>10} {args.steps / ours:>15,.0f} {args.steps / plain:>14,.0f} {plain / ours:>6.2f}")


if __name__ == "__main__":
    main()

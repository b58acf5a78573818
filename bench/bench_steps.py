"""Steps per second of the IWAE presets' one-layer model: vaelab's training step against a plain eager loop.

    .venv/bin/python bench/bench_steps.py [--steps 2000] [--samples 1 5 50] [--device cpu|cuda]
                                          [--busy] [--repeats 1] [--one-thread] [--plain-threads N]
                                          [--compile]

The paper's schedule is 3,280 passes of 2,980 steps of batch 20 (9.8 million
steps), so per-step overhead, not arithmetic, sets its time. For each K this
times, side by side in one process and on the same data:

- vaelab: the step `vaelab train` runs (dynamic binarization of a batch sliced
  from the training tensor, `training.train_step` with the preset's objective and
  its Adam, and the epoch's running sums), from the preset's config;
- plain: the same maths (tests/test_bench_steps.py checks the bounds agree)
  written as a plain eager PyTorch loop, the way the PyTorch examples write it:
  `nn.Sequential` networks, `torch.distributions`-free but unfused arithmetic,
  `torch.optim.Adam` with its defaults, and PyTorch's default CPU threads. On a
  CPU Adam's default is its per-tensor loop (PyTorch has foreach kernels only on
  GPUs, and fused is never the default), while vaelab runs the fused kernel: part
  of vaelab's gain on a CPU is that one argument (`fused=True`), which a plain
  loop could also pass (docs/benchmarks.md puts it at ~0.6 ms of a K = 1 step).

On a CPU vaelab's loop adapts its threads to the load a few times a second, as
`vaelab train` does (resources.ThreadTuner; VAELAB_THREADS pins them). --busy runs
`python -c "while True: pass"` beside both loops, keeping one core busy, as
another run or a test suite does on a shared machine. --repeats N times each
cell N times, the two loops taking turns, and prints the medians. --one-thread
also times the plain loop after `torch.set_num_threads(1)`, the one-line fix a
user could make by hand for a busy machine (it gives up the second core on an
idle one), and prints vaelab's ratio to the faster of the two plain loops.
--plain-threads N runs the plain loop on N threads only (the quick way to a fair
plain loop on a busy machine).

On a GPU (--device cuda) vaelab's step is timed twice: eagerly (VAELAB_CUDA_GRAPHS=0)
and as the CUDA graph replays `vaelab train` runs there (vaelab/steps.py), with
what one cell's full schedule would take at that rate. --compile adds two
experiments: the objective through torch.compile, then Adam's step as well
(replayed as graphs on a GPU), each timed after 20 untimed steps that compile it.

Prints steps per second and the ratios to the plain loop. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.compiling import compiled as compile_objective
from vaelab.compiling import compiled_update
from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.presets import load_preset
from vaelab.resources import ThreadTuner
from vaelab.steps import Step, Stepper
from vaelab.training import build_model, build_objective, build_optimizer, sums_size, train_step

FULL_SCHEDULE_STEPS = 3280 * 2980  # 3,280 passes over the presets' 59,600 training images in batches of 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def preset_config(cell: str, layers: str = "1-layer") -> TrainConfig:
    """The config of the IWAE preset `layers`/`cell`, e.g. ("iwae-k50", "1-layer"), for as many steps as asked."""
    return TrainConfig.from_dict({**load_preset(f"iwae/{layers}/{cell}"), "epochs": None})


def plain_networks(device: torch.device) -> tuple[nn.Sequential, nn.Sequential]:
    """The one-layer model as the PyTorch examples would write it: an encoder to (mu, log sigma) and a decoder."""
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(784, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 100))
    dec = nn.Sequential(nn.Linear(50, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh(), nn.Linear(200, 784))
    return enc.to(device), dec.to(device)


def plain_bound(enc: nn.Module, dec: nn.Module, x: torch.Tensor, k: int, iwae: bool,
                generator: torch.Generator) -> torch.Tensor:
    """The batch's bounds (B,), written plainly: the IWAE bound of K samples, or the ELBO with the reconstruction
    averaged over K samples and the analytic KL, as vaelab's VAE presets train it."""
    h = enc(x)
    mu, log_sigma = h[:, :50], h[:, 50:]
    sigma = torch.exp(log_sigma)
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device)
    z = mu + sigma * eps
    logits = dec(z)
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    if not iwae:
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1 - 2 * log_sigma).sum(-1)
        return log_px.mean(0) - kl
    log_pz = -0.5 * (math.log(2 * math.pi) + z.pow(2)).sum(-1)
    log_qz = -0.5 * (math.log(2 * math.pi) + 2 * log_sigma + eps.pow(2)).sum(-1)
    return torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k)


def plain_loop(x_grey: torch.Tensor, k: int, iwae: bool, steps: int, generator: torch.Generator,
               threads: int | None = None) -> float:
    """Seconds for `steps` steps of the same model and objective, written plainly; on `threads` CPU threads if
    given, else PyTorch's default."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        return _plain_steps(x_grey, k, iwae, steps, generator)
    finally:
        torch.set_num_threads(default)


def _plain_steps(x_grey: torch.Tensor, k: int, iwae: bool, steps: int, generator: torch.Generator) -> float:
    enc, dec = plain_networks(x_grey.device)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, betas=(0.99, 0.999), eps=5e-6)
    n = len(x_grey)
    _sync(x_grey.device)
    start = time.perf_counter()
    perm = torch.randperm(n, generator=generator, device=x_grey.device)
    for step in range(steps):
        b = step % (n // 20)
        x = torch.bernoulli(x_grey[perm[b * 20:(b + 1) * 20]], generator=generator)
        loss = -plain_bound(enc, dec, x, k, iwae, generator).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(x_grey.device)
    return time.perf_counter() - start


def vaelab_loop(x_grey: torch.Tensor, config: TrainConfig, steps: int, generator: torch.Generator,
                graphs: bool = False, compiled: bool = False, compiled_adam: bool = False, warmup: int = 0,
                step: Step = train_step) -> float:
    """Seconds for `steps` of vaelab's training step, with the loop's batching and running sums, after
    `warmup` untimed steps. `compiled`: the objective through torch.compile; `compiled_adam`: Adam's step
    too (PyTorch's foreach Adam through torch.compile in place of the fused kernel). What `vaelab train
    --compile` runs (the second on a GPU only); fused kernels round otherwise, so not bit for bit eager.
    `step`: another training step in place of vaelab's (bench/derived_step.py)."""
    device = x_grey.device
    model = build_model(config, (28, 28), x_grey.mean(0).double().cpu()).to(device)
    optimizer = build_optimizer(config, model, device)
    objective = compile_objective(build_objective(config), device) if compiled else build_objective(config)
    if compiled_adam and step is not train_step:
        raise ValueError("compiled_adam times vaelab's own step with compiled Adam; it takes no other step")
    if compiled_adam:  # what `vaelab train --compile` runs on a GPU, here on any device
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr_at(1), betas=(config.adam_beta1,
                                     config.adam_beta2), eps=config.adam_eps, foreach=True,
                                     capturable=device.type == "cuda")
        step = functools.partial(train_step, update=compiled_update(optimizer))

    def batch(index, gen):
        return torch.bernoulli(x_grey.index_select(0, index), generator=gen)

    stepper = Stepper(step, batch, model, optimizer, objective, generator, sums_size(config), graphs=graphs)
    sums = torch.zeros(sums_size(config), dtype=torch.float64, device=device)
    n = len(x_grey)
    perm = torch.randperm(n, generator=generator, device=device)
    threads = ThreadTuner(device)
    try:
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            b = i % (n // 20)
            sums += stepper(perm[b * 20:(b + 1) * 20]).to(sums.dtype)
            threads.adjust()  # after every batch, as training does (training._train_epoch)
        _sync(device)
        return time.perf_counter() - start
    finally:
        threads.restore()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--layers", default="1-layer", choices=["1-layer", "2-layer"],
                        help="the presets' model (the plain loop is always the one-layer model)")
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process meanwhile")
    parser.add_argument("--repeats", type=int, default=1, help="times each cell, the loops taking turns (medians)")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time the plain loop on one CPU thread; compare vaelab with the faster plain loop")
    parser.add_argument("--plain-threads", type=int, metavar="N", help="the plain loop on N CPU threads only")
    parser.add_argument("--compile", action="store_true",
                        help="also time the objective, then Adam's update too, through torch.compile (graphed on "
                             "a GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    x_grey = grey_levels(load_split("train").images).to(device)
    cpu = f"{platform.machine()}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        time.sleep(0.5 if spinner else 0)
        print_table(args, device, x_grey, where)
    finally:
        if spinner:
            spinner.kill()


def print_table(args: argparse.Namespace, device: torch.device, x_grey: torch.Tensor, where: str) -> None:
    gpu = device.type == "cuda"
    load = "one core kept busy by another process" if args.busy else "no load of its own"
    print(f"machine: {where}; torch {torch.__version__}; {args.steps} steps of batch 20 each; {load}; "
          f"median of {args.repeats}"
          + (f"; plain: {args.plain_threads} thread(s)" if args.plain_threads else "")
          + ("; vaelab: the two-layer presets, plain: the one-layer loop" if args.layers == "2-layer" else ""))
    one = args.one_thread and not gpu
    print(f"{'cell':>10} {'plain steps/s':>14} {'vaelab steps/s':>15} {'ratio':>6}"
          + (f" {'plain 1-thread steps/s':>23} {'best plain':>10} {'ratio':>6}" if one else "")
          + (f" {'graphed steps/s':>16} {'ratio':>6} {'full schedule':>14}" if gpu else "")
          + (f" {'compiled steps/s':>17} {'ratio':>6} {'+ Adam steps/s':>15} {'ratio':>6} {'full schedule':>14}"
             if args.compile else ""))
    for k in args.samples:
        for name in (f"vae-k{k}", f"iwae-k{k}") if k > 1 else ("vae-k1",):
            config = preset_config(name, args.layers)
            g = torch.Generator(device=device)
            plains, ourses, singles = [], [], []
            for _ in range(args.repeats):
                plains.append(plain_loop(x_grey, k, name.startswith("iwae"), args.steps, g.manual_seed(0),
                                         threads=args.plain_threads))
                ourses.append(vaelab_loop(x_grey, config, args.steps, g.manual_seed(0)))
                if one:
                    singles.append(plain_loop(x_grey, k, name.startswith("iwae"), args.steps, g.manual_seed(0),
                                              threads=1))
            plain, ours = statistics.median(plains), statistics.median(ourses)
            line = f"{name:>10} {args.steps / plain:>14,.0f} {args.steps / ours:>15,.0f} {plain / ours:>6.2f}"
            if one:
                single = statistics.median(singles)
                best = min(plain, single)
                line += (f" {args.steps / single:>23,.0f} {'1 thread' if single < plain else 'default':>10} "
                         f"{best / ours:>6.2f}")
            if gpu:
                graphed = vaelab_loop(x_grey, config, args.steps, g.manual_seed(0), graphs=True)
                minutes = FULL_SCHEDULE_STEPS * graphed / args.steps / 60
                line += f" {args.steps / graphed:>16,.0f} {plain / graphed:>6.2f} {minutes:>10,.0f} min"
            if args.compile:
                fused = vaelab_loop(x_grey, config, args.steps, g.manual_seed(0), graphs=gpu, compiled=True,
                                    warmup=20)
                adam = vaelab_loop(x_grey, config, args.steps, g.manual_seed(0), graphs=gpu, compiled=True,
                                   compiled_adam=True, warmup=20)
                minutes = FULL_SCHEDULE_STEPS * adam / args.steps / 60
                line += (f" {args.steps / fused:>17,.0f} {plain / fused:>6.2f} {args.steps / adam:>15,.0f}"
                         f" {plain / adam:>6.2f} {minutes:>10,.0f} min")
            print(line, flush=True)


if __name__ == "__main__":
    main()

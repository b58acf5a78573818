"""An experiment, not kept in vaelab: the one-layer IWAE presets' step with gradients derived by hand.

    .venv/bin/python bench/derived_step.py [--steps 300] [--repeats 3] [--cells vae-k1 vae-k5 iwae-k5]

Would training without autograd bring vaelab's CPU step to twice the plain loop's speed (issue 9)? Here the
forward pass runs under `torch.no_grad` and the gradients are written out: the same matrix products autograd
runs, straight into each parameter's `.grad`, and the element-wise chain rule in a few dozen tensor ops
(`derived_step`; tests/test_bench_derived_step.py checks the gradients against autograd's and the draws
against vaelab's objective's). The maths, for the one-stochastic-layer model (x -> mu, var -> z -> logits):

- reconstruction, with the Bernoulli log-likelihood's gradient d log p(x|z) / d logits = x - sigmoid(logits);
- VAE (Kingma & Welling 2014, eq. 10 and appendix B): loss = -(1/B) sum_b [(1/K) sum_k log p(x_b|z_kb)
  - beta KL_b], with dKL/dmu = mu and dKL/dvar = (1 - 1/var) / 2;
- IWAE (Burda et al. 2015, eq. 8 and 14): loss = -(1/B) sum_b log (1/K) sum_k w_kb, whose gradient weights
  each sample's d log w_kb by its normalised weight softmax_k(log w)_kb; log w = log p(x|z) + log p(z)
  - log q(z|x) adds d/dz = -z + (z - mu)/var, d/dmu = -(z - mu)/var and d/dvar = (1 - (z - mu)^2/var)/(2 var)
  through the densities;
- the reparameterisation z = mu + sqrt(var) eps passes dz to dmu and, times eps / (2 sqrt(var)), to dvar;
  var = exp(2 pre) gives dpre = 2 var dvar, var = softplus(pre) gives dpre = sigmoid(pre) dvar.

It times, taking turns in one process, the plain loop and vaelab's loop of bench/bench_steps.py and that loop
with this step in place of vaelab's (Adam, batches, running sums and the thread tuner unchanged). Its
gradients round otherwise than autograd's (a relative 1e-7 for the VAE, 1e-5 for the IWAE bound), so a run
trained with it would not reproduce the published runs' bits; the gain it measures decides whether that
trade is worth making. Results go in docs/benchmarks.md ("A hand-derived backward").
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics

import torch
import torch.nn.functional as F
from bench_steps import plain_loop, preset_config, vaelab_loop
from torch import nn

from vaelab.config import TrainConfig
from vaelab.data import grey_levels, load_split
from vaelab.models.base import posterior_variance
from vaelab.objectives import LOG_2PI, Terms, kl_to_standard_normal
from vaelab.steps import Step


def _layers(module: nn.Module) -> list[nn.Linear]:
    return [getattr(module, f"layer{i}") for i in range(1, module.n_layers + 1)]


def _forward(layers: list[nn.Linear], h: torch.Tensor, activation) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each layer's input, and the last layer's output (no activation after it)."""
    inputs = []
    for i, layer in enumerate(layers):
        inputs.append(h)
        h = torch.addmm(layer.bias, h, layer.weight.t())
        if i < len(layers) - 1:
            h = activation(h)
    return inputs, h


def _backward(layers: list[nn.Linear], inputs: list[torch.Tensor], grad: torch.Tensor, activation: str,
              input_grad: bool) -> torch.Tensor | None:
    """Write each layer's weight and bias gradients from `grad`, the gradient of the last layer's output;
    return the gradient of the first layer's input if `input_grad`."""
    for i in range(len(layers) - 1, -1, -1):
        layer, h = layers[i], inputs[i]
        layer.weight.grad = grad.t().mm(h)
        layer.bias.grad = grad.sum(0)
        if i == 0 and not input_grad:
            return None
        grad = grad.mm(layer.weight)
        if i > 0:  # through the activation that made h
            grad = torch.ops.aten.tanh_backward(grad, h) if activation == "tanh" else grad * (h > 0)
    return grad


def derived_terms(model: nn.Module, x: torch.Tensor, generator: torch.Generator, objective: str, samples: int,
                  beta: float = 1.0) -> Terms:
    """vaelab's objective `objective` ("elbo", "beta" or "iwae") on the one-stochastic-layer perceptron
    model, with the gradient of the batch's mean loss written into each parameter's .grad; the same
    Terms and the same draws from `generator` as the objective itself."""
    act = torch.tanh if model.activation == "tanh" else F.relu
    enc, dec = _layers(model.encoder), _layers(model.decoder)
    size, k = x.shape[0], samples
    with torch.no_grad():
        enc_in, out = _forward(enc, x, act)
        mu, pre = out.split(model.latent_size, dim=-1)
        var = posterior_variance(pre, model.variance)
        noise = torch.randn(mu.shape if k == 1 else (k, *mu.shape), generator=generator, dtype=mu.dtype)
        std = torch.sqrt(var)
        z = (mu + std * noise).view(k, *mu.shape)
        noise = noise.view(k, *mu.shape)
        dec_in, logits = _forward(dec, z.view(-1, model.latent_size), act)
        logits = logits.view(k, size, -1)
        loglike = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        kl = kl_to_standard_normal(mu, var)
        residual = torch.sigmoid(logits) - x  # d(-log p(x|z)) / d logits
        if objective == "iwae":
            diff = z - mu
            log_q = -0.5 * (LOG_2PI + torch.log(var) + diff.pow(2) / var).sum(-1)
            log_w = loglike - 0.5 * (LOG_2PI + z.pow(2)).sum(-1) - log_q
            value = torch.logsumexp(log_w, 0) - math.log(k)
            weight = (torch.softmax(log_w, 0) / size)[..., None]  # d loss / d(-log w), (K, B, 1)
            dz = _backward(dec, dec_in, (residual * weight).view(k * size, -1), model.activation, True)
            dz = dz.view(k, size, -1) + weight * (z - diff / var)
            dmu = dz.sum(0) + (weight * diff / var).sum(0)
            dvar = (dz * noise).sum(0) * (0.5 / std) + (weight * 0.5 * (diff.pow(2) / var - 1) / var).sum(0)
            terms = Terms(value, loglike.mean(0), kl)
        else:
            mean_loglike = loglike.mean(0)
            value = mean_loglike - kl if beta == 1.0 else mean_loglike - beta * kl
            dz = _backward(dec, dec_in, (residual * (1.0 / (size * k))).view(k * size, -1), model.activation, True)
            dz = dz.view(k, size, -1)
            dmu = dz.sum(0) + mu * (beta / size)
            dvar = (dz * noise).sum(0) * (0.5 / std) + (0.5 * beta / size) * (1 - 1 / var)
            terms = Terms(value, mean_loglike, kl)
        dpre = dvar * (2 * var) if model.variance == "exp" else dvar * torch.sigmoid(pre)
        _backward(enc, enc_in, torch.cat([dmu, dpre], -1), model.activation, False)
    return terms


def derived_step(config: TrainConfig) -> Step:
    """A training step for `config` (a one-layer IWAE preset, or any "mlp" model with the ELBO or IWAE) with
    the hand-derived gradient, in the shape of vaelab's `training.train_step`."""
    if config.model != "mlp" or config.objective not in ("elbo", "beta", "iwae"):
        raise ValueError(f"derived gradients are written for the mlp model with elbo, beta or iwae, not "
                         f"{config.model} with {config.objective}")

    def step(model, optimizer, x, generator, objective):  # `objective`: vaelab's, whose maths this writes out
        terms = derived_terms(model, x, generator, config.objective, config.samples, config.beta)
        optimizer.step()
        return terms

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="rounds, the three loops taking turns (medians)")
    parser.add_argument("--cells", nargs="+", default=["vae-k1", "vae-k5", "iwae-k5"], help="one-layer presets")
    args = parser.parse_args()
    x_grey = grey_levels(load_split("train").images)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}; {args.steps} steps of batch 20 "
          f"each; median of {args.repeats}")
    print(f"{'cell':>10} {'plain steps/s':>14} {'vaelab steps/s':>15} {'derived steps/s':>16} "
          f"{'vaelab/plain':>13} {'derived/plain':>14} {'derived/vaelab':>15}")
    for cell in args.cells:
        config = preset_config(cell)
        g = torch.Generator()
        times: dict[str, list[float]] = {"plain": [], "vaelab": [], "derived": []}
        for _ in range(args.repeats):
            times["plain"].append(plain_loop(x_grey, config.samples, config.objective == "iwae", args.steps,
                                             g.manual_seed(0)))
            times["vaelab"].append(vaelab_loop(x_grey, config, args.steps, g.manual_seed(0)))
            times["derived"].append(vaelab_loop(x_grey, config, args.steps, g.manual_seed(0),
                                                step=derived_step(config)))
        plain, ours, derived = (statistics.median(times[name]) for name in ("plain", "vaelab", "derived"))
        print(f"{cell:>10} {args.steps / plain:>14,.0f} {args.steps / ours:>15,.0f} {args.steps / derived:>16,.0f} "
              f"{plain / ours:>13.2f} {plain / derived:>14.2f} {ours / derived:>15.2f}", flush=True)


if __name__ == "__main__":
    main()

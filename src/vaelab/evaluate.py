"""Test-set scores: the ELBO and the importance-weighted estimate of log p(x).

Both are in nats per image, with standard errors over images. The IW estimate
(Burda, Grosse & Salakhutdinov 2015) draws K posterior samples per image,
vectorised over (K, B, D), and never drops a normalising constant, so it is
directly comparable with published MNIST log-likelihoods.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab.checkpoint import EVAL, load_run, write_json
from vaelab.data import binarize, load_split
from vaelab.device import make_generator, resolve_device
from vaelab.errors import VaelabError
from vaelab.latent import active_units, encode_all, kl_per_dimension
from vaelab.model import VAE, ElboTerms
from vaelab.objectives import (
    bernoulli_log_likelihood,
    gaussian_log_density,
    importance_weighted_log_likelihood,
    reparameterize,
    standard_normal_log_density,
)

# Largest (K, B, D) block of decoder logits held at once: 2^20 floats, 4 MiB. Small
# blocks stay in cache and avoid page-faulting fresh memory; on this 2-core CPU they
# run the K=1000 test twice as fast as 64 MiB blocks (docs/benchmarks.md).
MAX_BLOCK = 1 << 20
MAX_NOISE = 1 << 22  # largest (K, B, L) block of noise drawn at once


@dataclass(frozen=True)
class EvalResult:
    """Test-set scores of one run, per image, in nats."""

    elbo: float
    elbo_stderr: float
    log_likelihood: float | None  # IW estimate; None when iw_k is 0
    log_likelihood_stderr: float | None
    iw_k: int
    loglike: float  # reconstruction term E_q[log p(x|z)]
    kl: float  # KL(q(z|x) || p(z))
    n_images: int
    seed: int
    epoch: int
    active_units: int  # dimensions with Var_x(mu_j(x)) > 0.01 (Burda et al. 2015)
    kl_per_dimension: list[float]  # mean KL of each latent dimension; sums to `kl`

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(n: int, size: int) -> Iterator[slice]:
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


@torch.inference_mode()
def elbo_terms(model: VAE, x: torch.Tensor, *, generator: torch.Generator, batch_size: int = 2000) -> ElboTerms:
    """Per-image one-sample ELBO terms over a whole set x of shape (N, D)."""
    parts = [model(x[s], generator) for s in _batches(len(x), batch_size)]
    return ElboTerms(torch.cat([p.loglike for p in parts]), torch.cat([p.kl for p in parts]))


@torch.inference_mode()
def iw_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    *,
    k: int,
    generator: torch.Generator,
    batch_size: int = 100,
    progress: bool = False,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image, (N,), Burda et al. (2015) eq. 8.

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) with z_k ~ q(z|x); the estimate
    is logsumexp_k(log w_k) - log K. The noise of a batch is drawn at once, (K, B, L);
    decoding runs in chunks of the K axis so memory stays bounded, and the chunks'
    log-sum-exps combine exactly, so the result does not depend on the chunk size.
    """
    if k < 1:
        raise VaelabError(f"--iw-k must be at least 1, got {k}")
    latent = model.latent_size
    batch_size = max(1, min(batch_size, MAX_NOISE // (k * latent)))
    out = []
    for s in tqdm(list(_batches(len(x), batch_size)), desc=f"IW K={k}", disable=not progress, leave=False):
        xb = x[s]  # (B, D)
        mu, var = model.encode(xb)  # (B, L)
        noise = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        chunk = max(1, MAX_BLOCK // (xb.shape[0] * xb.shape[1]))
        log_w = []  # (K, B) in pieces
        for eps in noise.split(chunk):
            z = reparameterize(mu, var, eps)  # (n, B, L)
            log_w.append(
                bernoulli_log_likelihood(model.decode(z), xb)  # (n, B)
                + standard_normal_log_density(z)
                - gaussian_log_density(z, mu, var)
            )
        out.append(importance_weighted_log_likelihood(torch.cat(log_w)))
    return torch.cat(out)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error over images."""
    values = values.detach().cpu().double()  # float64 on the CPU: MPS has no float64
    stderr = values.std(unbiased=True) / math.sqrt(len(values)) if len(values) > 1 else torch.tensor(0.0)
    return values.mean().item(), stderr.item()


def evaluate_model(
    model: VAE,
    x: torch.Tensor,
    *,
    iw_k: int = 1000,
    seed: int = 0,
    epoch: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Score a model on binary images x (N, D) already on the model's device."""
    if iw_k < 0:
        raise VaelabError(f"--iw-k must be at least 1 (or 0 to skip the IW estimate), got {iw_k}")
    generator = make_generator(x.device, seed)
    terms = elbo_terms(model, x, generator=generator)
    mu, var = encode_all(model, x)
    elbo, elbo_se = mean_and_stderr(terms.elbo)
    ll = ll_se = None
    if iw_k:
        ll, ll_se = mean_and_stderr(iw_log_likelihood(model, x, k=iw_k, generator=generator, progress=progress))
    return EvalResult(
        elbo=elbo,
        elbo_stderr=elbo_se,
        log_likelihood=ll,
        log_likelihood_stderr=ll_se,
        iw_k=iw_k,
        loglike=terms.loglike.cpu().double().mean().item(),
        kl=terms.kl.cpu().double().mean().item(),
        n_images=len(x),
        seed=seed,
        epoch=epoch,
        active_units=int(active_units(mu).sum()),
        kl_per_dimension=kl_per_dimension(mu, var).cpu().double().tolist(),
    )


def evaluate_run(
    path: str | Path,
    *,
    iw_k: int = 1000,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | None = None,
    progress: bool = False,
    save: bool = True,
) -> EvalResult:
    """Score a run on the 10,000 test images, binarized as in training; save eval.json."""
    run = load_run(path)
    dev = resolve_device(device)
    model = run.model.to(dev)
    split = load_split("test", data_dir if data_dir is not None else run.config.data_dir)
    x = binarize(split.images, run.config.binarization, make_generator(dev, seed))
    result = evaluate_model(model, x, iw_k=iw_k, seed=seed, epoch=run.epoch, progress=progress)
    if save:
        write_json(Path(path) / EVAL, result.to_dict())
    return result

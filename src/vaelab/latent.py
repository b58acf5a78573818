"""Operations in the latent space: tensors in, tensors out, no plotting.

These are the article's "Using the model" section as functions: class
statistics of the posterior, sampling a chosen class, mixing two classes,
interpolating between them, mapping the codes to 2-D, and the diagnostics of
posterior collapse (KL per dimension and active units).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.catalog import DIGITS, Classes
from vaelab.errors import VaelabError
from vaelab.model import VAE

ACTIVE_THRESHOLD = 0.01  # Burda et al. (2015), section 5.2
EMBED_METHODS = ("tsne", "pca", "umap")


@dataclass(frozen=True)
class ClassStats:
    """Per-class statistics of the posterior over a set of images."""

    classes: torch.Tensor  # (C,) the labels present, sorted
    means: torch.Tensor  # (C, L) mean of the posterior means mu(x) of each class
    variances: torch.Tensor  # (C, L) mean of the posterior variances var(x) of each class
    counts: torch.Tensor  # (C,) images per class

    def index(self, label: int, classes: Classes = DIGITS) -> int:
        """Row of `label`, with a clear error, naming the classes present, for one that is not there."""
        hits = (self.classes == label).nonzero()
        if len(hits) == 0:
            present = self.classes.tolist()
            if classes.digits:
                known = ", ".join(classes.name(c) for c in present)
                raise VaelabError(f"digit {label} is not a class of this data; choose one of {known}")
            known = ", ".join(f"{c} ({classes.name(c)})" if classes.name(c) != str(c) else str(c) for c in present)
            raise VaelabError(f"no class {classes.name(label)!r} in these images; choose one of {known}")
        return int(hits[0, 0])


@torch.inference_mode()
def encode_all(model: VAE, x: torch.Tensor, batch_size: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and variances of every image, batched. (N, D) -> (N, L), (N, L)"""
    parts = [model.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def class_statistics(mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor) -> ClassStats:
    """Mean posterior mean and mean posterior variance of each class, as the article computes them."""
    classes = labels.unique(sorted=True)
    means = torch.stack([mu[labels == c].mean(0) for c in classes])
    variances = torch.stack([var[labels == c].mean(0) for c in classes])
    counts = torch.stack([(labels == c).sum() for c in classes])
    return ClassStats(classes=classes, means=means, variances=variances, counts=counts)


def sample_class(stats: ClassStats, label: int, n: int, generator: torch.Generator, *,
                 classes: Classes = DIGITS) -> torch.Tensor:
    """n codes of one class: z = class mean + eps * sqrt(class variance), the article's recipe. (n, L)"""
    i = stats.index(label, classes)
    mean, var = stats.means[i], stats.variances[i]
    noise = torch.randn((n, mean.shape[0]), generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + noise * var.sqrt()


def sample_prior(n: int, latent_size: int, generator: torch.Generator) -> torch.Tensor:
    """n codes from the prior N(0, I). (n, L)"""
    return torch.randn((n, latent_size), generator=generator, device=generator.device)


def mix_matrix(means: torch.Tensor) -> torch.Tensor:
    """The average of every pair of class means: (C, L) -> (C, C, L), symmetric, diagonal = means."""
    return (means[:, None, :] + means[None, :, :]) / 2


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` evenly spaced points from a to b, both included. (L,), (L,) -> (steps, L)"""
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models), both ends included.

    Moves along the great circle between the directions of a and b while the
    norm changes linearly, so points keep the typical norm of Gaussian codes
    instead of shrinking towards the origin as lerp's midpoints do. Between
    opposite directions no great circle is singled out and it falls back to lerp.
    """
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return lerp(a, b, steps)
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6 or (torch.pi - omega).abs() < 1e-3:  # parallel or opposite: no unique circle
        return lerp(a, b, steps)
    direction = (torch.sin((1 - t) * omega) * (a / na) + torch.sin(t * omega) * (b / nb)) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "lerp") -> torch.Tensor:
    """The codes between a and b, endpoints included, by 'lerp' or 'slerp'. (steps, L)"""
    if steps < 2:
        raise VaelabError(f"--steps must be at least 2 (both endpoints are included), got {steps}")
    if method == "lerp":
        return lerp(a, b, steps)
    if method == "slerp":
        return slerp(a, b, steps)
    raise VaelabError(f"unknown interpolation method {method!r}; use lerp or slerp")


def kl_per_dimension(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mean over images of KL(q(z_j|x) || N(0, 1)) for each latent dimension j. (N, L) -> (L,)

    These sum to the mean KL term of the ELBO (Kingma & Welling 2014, appendix B). Of a model with two
    stochastic layers (mlp2), whose `encode` gives z's posterior at h1 = its posterior mean, they are the top
    layer's alone, and do not sum to its ELBO's KL, which is of both layers and sampled.
    """
    return (0.5 * (mu.pow(2) + var - 1.0 - torch.log(var))).mean(0)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> torch.Tensor:
    """Which dimensions are active: Var_x(E_q[z_j | x]) > threshold (Burda et al. 2015). (N, L) -> (L,) bool"""
    return mu.var(0, unbiased=True) > threshold


def embed(codes: np.ndarray, method: str = "tsne", *, seed: int = 0, perplexity: float = 40.0) -> np.ndarray:
    """Map codes (N, L) to 2-D points (N, 2): t-SNE (the article's choice), PCA or UMAP."""
    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) < 3:
        raise VaelabError(f"a 2-D map needs at least 3 codes, got {len(codes)}; raise --n-stats")
    if codes.shape[1] < 2:  # a 1-D latent: its map is a line
        codes = np.pad(codes, ((0, 0), (0, 2 - codes.shape[1])))
    if method == "pca":
        centred = codes - codes.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        from vaelab.resources import threads_free_now

        perplexity = min(perplexity, (len(codes) - 1) / 3)  # sklearn needs perplexity < N
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=-1)
        with threadpool_limits(threads_free_now(), user_api="openmp"):  # a busy core: fewer threads, no spinning
            return tsne.fit_transform(codes)
    if method == "umap":
        umap = require_embedding("umap")
        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(codes)  # seeded: 1 job
    raise VaelabError(f"unknown embedding method {method!r}; use one of {', '.join(EMBED_METHODS)}")


def require_embedding(method: str):
    """The optional module an embedding method needs, or a clear error saying how to get it."""
    if method != "umap":
        return None
    try:
        import umap
    except ImportError:
        raise VaelabError(
            "--method umap needs the umap-learn package: `pip install umap-learn` "
            "(or use --method tsne or pca)"
        ) from None
    return umap


@torch.inference_mode()
def decode_images(model: VAE, z: torch.Tensor, style: str = "mean",
                  shape: tuple[int, int] | None = None) -> np.ndarray:
    """Images for codes z (..., L) -> (..., H, W) floats in [0, 1], (H, W) = `shape` (default: square).

    'mean' shows the Bernoulli means (grey levels); 'binary' shows sigmoid > 0.5,
    black and white as in the article's `generateImage`.
    """
    p = torch.sigmoid(model.decode(z))
    if style == "binary":
        p = (p > 0.5).float()
    elif style != "mean":
        raise VaelabError(f"unknown --style {style!r}; use mean or binary")
    if shape is None:
        side = int(round(p.shape[-1] ** 0.5))
        shape = (side, side)
    if shape[0] * shape[1] != p.shape[-1]:
        raise VaelabError(f"the decoder gives {p.shape[-1]} pixels, which is no {shape[0]} x {shape[1]} image")
    return p.reshape(*p.shape[:-1], *shape).cpu().numpy()

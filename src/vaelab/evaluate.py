"""Test-set scores: the ELBO and the importance-weighted estimate of log p(x).

Both are in nats per image, with standard errors over images. The IW estimate
(Burda, Grosse & Salakhutdinov 2015) draws K posterior samples per image,
vectorised over (K, B, D), and never drops a normalising constant, so it is
directly comparable with published MNIST log-likelihoods.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab import explore
from vaelab.checkpoint import EVAL, Run, load_run
from vaelab.data import DataMismatchWarning, Split, binarize, binarize_threshold, data_mismatches, load_split
from vaelab.device import make_generator, resolve_device
from vaelab.errors import Diverged, VaelabError
from vaelab.files import display, write_json
from vaelab.judge import (
    LoadedJudge,
    accuracy,
    classify,
    describe,
    feature_statistics,
    frechet_distance,
    load_judge,
    per_class_accuracy,
    shipped_path,
)
from vaelab.latent import ClassStats, active_units, encode_all, kl_per_dimension, sample_class
from vaelab.models import VAEModel
from vaelab.objectives import (
    ElboTerms,
    bernoulli_log_likelihood,
    gaussian_log_density,
    importance_weighted_log_likelihood,
    reparameterize,
    standard_normal_log_density,
)
from vaelab.prepare import test_pixels_generator
from vaelab.resources import ThreadTuner

# Largest (K, B, D) block of decoder logits held at once: 2^20 floats, 4 MiB. Small
# blocks stay in cache and avoid page-faulting fresh memory; on this 2-core CPU they
# run the K=1000 test twice as fast as 64 MiB blocks (docs/benchmarks.md).
MAX_BLOCK = 1 << 20
MAX_NOISE = 1 << 22  # largest (K, B, L) block of noise drawn at once
JUDGE_STATS = 10000  # training images behind the class statistics of generation, as the figures use
JUDGE_PER_CLASS = 1000  # generated images per class: 10,000 for 10 classes, as many as the test images


OPTIONAL_FIELDS = {"judge", "active_units_by_layer"}  # absent from eval.json files written before them


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
    # What was scored, so a score is never shown beside other weights or data:
    step: int = 0  # optimizer steps behind the weights
    weights_sha256: str = ""  # digest of the weights scored (vaelab.checkpoint.weights_digest)
    data_sha256: dict[str, str] | None = None  # the test files scored, name -> SHA-256
    data_matches_run: bool = True  # whether they are the files the run recorded
    iw_seed: int | None = None  # seed of the IW estimate (kept from an earlier eval if its K was larger)
    # The judge's scores of generated images (JUDGE_KEYS), or None: no judge for the dataset, or --no-judge.
    judge: dict[str, Any] | None = None
    # Several stochastic layers (mlp2): each layer's active units, lowest first, counted as Burda et al.'s code
    # does (the variance over images of each unit's posterior mean, the layers below sampled); else None.
    active_units_by_layer: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalResult:
        """Rebuild a result from eval.json, refusing anything that is not one (ValueError)."""
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object, found {type(values).__name__}")
        missing = {f.name for f in fields(cls)} - set(values) - OPTIONAL_FIELDS
        extra = set(values) - {f.name for f in fields(cls)}
        if missing or extra:
            raise ValueError(f"fields {sorted(missing)} missing and {sorted(extra)} unexpected")
        result = cls(**values)
        _check_result_types(result)
        return result


def _check_result_types(r: EvalResult) -> None:
    def number(name: str, value: Any, optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, found {value!r}")

    for name in ("elbo", "elbo_stderr", "loglike", "kl"):
        number(name, getattr(r, name))
    number("log_likelihood", r.log_likelihood, optional=True)
    number("log_likelihood_stderr", r.log_likelihood_stderr, optional=r.log_likelihood is None)
    for name in ("iw_k", "n_images", "seed", "epoch", "active_units", "step"):
        value = getattr(r, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, found {value!r}")
    if r.iw_seed is not None and (isinstance(r.iw_seed, bool) or not isinstance(r.iw_seed, int)):
        raise ValueError(f"iw_seed must be an integer or null, found {r.iw_seed!r}")
    if not isinstance(r.kl_per_dimension, list):
        raise ValueError("kl_per_dimension must be a list of numbers")
    for j, value in enumerate(r.kl_per_dimension):
        number(f"kl_per_dimension[{j}]", value)
    if not isinstance(r.weights_sha256, str) or not isinstance(r.data_matches_run, bool):
        raise ValueError("weights_sha256 must be a string and data_matches_run true or false")
    if r.data_sha256 is not None and not (
        isinstance(r.data_sha256, dict) and all(isinstance(v, str) for v in r.data_sha256.values())
    ):
        raise ValueError("data_sha256 must map file names to digests")
    if r.judge is not None:
        _check_judge(r.judge)
    if r.active_units_by_layer is not None and not (
        isinstance(r.active_units_by_layer, list)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r.active_units_by_layer)
    ):
        raise ValueError("active_units_by_layer must be null or a list of non-negative integers")


JUDGE_KEYS = {
    "name": str,  # the shipped judge's dataset name, or the file given with --judge
    "sha256": str,  # of the judge file
    "class_accuracy": float,  # judge's accuracy on the generated images, labelled with the class they were made for
    "per_class": dict,  # {label: that accuracy for one class}
    "test_accuracy": float,  # judge's accuracy on the run's test images, measured now
    "fid": float,  # Fréchet distance of judge features, generated vs test images
    "fid_floor": float,  # the same, test vs as many training images: what sampling alone leaves
    "n_generated": int,  # images generated, the same number per class
    "seed": int,  # seed of the class statistics' subset and of the generated codes
}


def _check_judge(judge: Any) -> None:
    if not isinstance(judge, dict) or set(judge) != set(JUDGE_KEYS):
        raise ValueError(f"judge must be null or an object with the fields {sorted(JUDGE_KEYS)}")
    for key, kind in JUDGE_KEYS.items():
        value = judge[key]
        ok = (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
              if kind is float else isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            raise ValueError(f"judge.{key} must be {'a finite number' if kind is float else kind.__name__}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
               for v in judge["per_class"].values()):
        raise ValueError("judge.per_class must map labels to accuracies between 0 and 1")


def _batches(n: int, size: int) -> Iterator[slice]:
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


@torch.inference_mode()
def elbo_terms(model: VAEModel, x: torch.Tensor, *, generator: torch.Generator, batch_size: int = 2000) -> ElboTerms:
    """Per-image one-sample ELBO terms over a whole set x of shape (N, D)."""
    parts = [model(x[s], generator) for s in _batches(len(x), batch_size)]
    return ElboTerms(torch.cat([p.loglike for p in parts]), torch.cat([p.kl for p in parts]))


@torch.inference_mode()
def iw_log_likelihood(
    model: VAEModel,
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
    batch_size = max(1, min(batch_size, MAX_NOISE // (k * model.noise_size)))
    threads = ThreadTuner(x.device)  # minutes of work: as many threads as the cores others leave free
    try:
        batches = tqdm(list(_batches(len(x), batch_size)), desc=f"IW K={k}", disable=not progress, leave=False)
        out = []
        for s in batches:
            threads.adjust()
            out.append(_iw_batch(model, x[s], k, generator))
    finally:
        threads.restore()
    return torch.cat(out)


def _iw_batch(model: VAEModel, xb: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The IW estimate for one batch of images xb (B, D), decoding the K draws a chunk at a time. -> (B,)"""
    chunk = max(1, MAX_BLOCK // (xb.shape[0] * xb.shape[1]))
    if model.hierarchical:  # several stochastic layers: all their noise drawn at once, scored in chunks
        noise = model.noise(k, xb.shape[0], generator, xb.device, xb.dtype)
        chunks = zip(*(n.split(chunk) for n in noise), strict=True)  # (h1's, z's) noise, chunk by chunk
        return importance_weighted_log_likelihood(torch.cat([model.log_weights(xb, len(e[0]), None, e)[0]
                                                             for e in chunks]))
    mu, var = model.encode(xb)  # (B, L)
    noise = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    log_w = []  # (K, B) in pieces
    for eps in noise.split(chunk):
        z = reparameterize(mu, var, eps)  # (n, B, L)
        log_w.append(
            bernoulli_log_likelihood(model.decode(z), xb)  # (n, B)
            + standard_normal_log_density(z)
            - gaussian_log_density(z, mu, var)
        )
    return importance_weighted_log_likelihood(torch.cat(log_w))


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error over images."""
    values = values.detach().cpu().double()  # float64 on the CPU: MPS has no float64
    stderr = values.std(unbiased=True) / math.sqrt(len(values)) if len(values) > 1 else torch.tensor(0.0)
    return values.mean().item(), stderr.item()


def evaluate_model(
    model: VAEModel,
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
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise Diverged("the model's weights hold NaN or infinite values: the run diverged")
    generator = make_generator(x.device, seed)
    terms = elbo_terms(model, x, generator=generator)
    mu, var = encode_all(model, x)
    elbo, elbo_se = mean_and_stderr(terms.elbo)
    ll = ll_se = None
    if iw_k:
        ll, ll_se = mean_and_stderr(iw_log_likelihood(model, x, k=iw_k, generator=generator, progress=progress))
    if not all(math.isfinite(v) for v in (elbo, elbo_se, *([ll, ll_se] if iw_k else []))):
        raise Diverged(f"its test ELBO is {elbo} and its IW estimate {ll}: the run diverged")
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
        iw_seed=seed if iw_k else None,
        active_units_by_layer=[int(active_units(m).sum()) for m in model.layer_means(x, generator)]
        if model.hierarchical else None,
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
    judge: str | Path | bool = True,
    judge_per_class: int = JUDGE_PER_CLASS,
) -> EvalResult:
    """Score a run on its test images, binarized as in training; save eval.json.

    `judge` True scores generated images with the judge shipped for the run's dataset
    (none for kmnist or a folder: then `judge` is None in the result), a path with that
    judge file, False not at all (eval.json then keeps an earlier judge's scores of the
    same weights). See `judge_run`.

    The result names the weights (digest and step) and the test files it scored;
    data that differ from the files the run recorded raise a DataMismatchWarning
    naming them. A diverged run (non-finite weights or scores) raises Diverged
    and writes nothing. eval.json keeps, for the same weights and data, the
    importance-weighted estimate with the largest K so far.
    """
    check_iw_k(iw_k)
    run = load_run(path)
    check_iw_k(iw_k, run.model.noise_size)
    judged = find_judge(run, judge)
    codes = explore.encode_subset(run, n=JUDGE_STATS, seed=seed, data_dir=data_dir) if judged else None
    dev = resolve_device(device)
    model = run.model.to(dev)
    split = load_split("test", data_dir if data_dir is not None else run.config.data_dir,
                       dataset=run.config.dataset, class_names=run.config.class_names)
    differences = data_mismatches(run.data.get("sha256", {}), split.files)
    if differences:
        warnings.warn(f"the test files differ from the ones {display(path)} was trained with "
                      f"({'; '.join(differences)}); these scores are of other data", DataMismatchWarning,
                      stacklevel=2)
    x = binarize(split.images, run.config.binarization, test_pixels_generator(run, dev, seed)).to(dev)
    try:
        result = evaluate_model(model, x, iw_k=iw_k, seed=seed, epoch=run.epoch, progress=progress)
    except Diverged as exc:
        raise Diverged(f"{display(path)} cannot be scored: {exc}. Train again with a lower --lr") from None
    scores = None
    if judged is not None:
        scores = judge_run(run, judged, codes.stats, split, data_dir=data_dir, seed=seed, per_class=judge_per_class)
    result = replace(result, step=run.step, weights_sha256=run.weights_sha256, data_sha256=split.files,
                     data_matches_run=not differences, judge=scores)
    if save:
        old = read_eval(run)
        kept = keep_larger_iw(result, old)
        if judge is False and old is not None and kept.data_sha256 == old.data_sha256:
            kept = replace(kept, judge=old.judge)  # --no-judge: keep the earlier judge's scores of these weights
        write_json(Path(path) / EVAL, kept.to_dict(), root=path)
    return result


def find_judge(run: Run, judge: str | Path | bool) -> LoadedJudge | None:
    """The judge to use: the file given, else the one shipped for the run's dataset, else None."""
    if judge is False:
        return None
    if judge is not True:
        found = load_judge(judge)
    else:
        shipped = shipped_path(run.config.dataset)
        if shipped is None:
            return None
        found = load_judge(shipped, name=run.config.dataset)
    shape, classes = tuple(found.model.args.image_shape), found.model.args.n_classes
    wanted = explore.image_shape(run)
    if shape != wanted or classes < len(explore.classes_of(run).names):
        raise VaelabError(f"{describe(found)} classifies {shape[0]} x {shape[1]} images into {classes} classes, "
                          f"but {display(run.path)} makes {wanted[0]} x {wanted[1]} images of "
                          f"{len(explore.classes_of(run).names)} classes; give a judge trained on the run's data "
                          "(`vaelab judge train`) with --judge, or --no-judge")
    return found


@torch.inference_mode()
def judge_run(run: Run, judged: LoadedJudge, stats: ClassStats, test: Split, *,
              data_dir: str | None = None, seed: int = 0, per_class: int = JUDGE_PER_CLASS) -> dict[str, Any]:
    """The judge's scores of images the run generates with the article's recipe (eval.json's `judge`).

    For each class, `per_class` codes z = class mean + noise * sqrt(class variance) (`latent.sample_class`,
    with the class statistics of `JUDGE_STATS` training images, as the figures compute them), decoded to
    Bernoulli means and thresholded at 0.5: black-and-white images like the real ones the judge was trained
    on (threshold binarization). Sampled pixels would add salt-and-pepper noise that no real image has.
    Reported: the judge's accuracy on them against the class they were made for, per class and overall;
    the Fréchet distance of its features, generated vs test images, and the floor: test vs as many
    training images (a seeded subset), the distance two real samples of the data keep.
    """
    model = run.model
    dev = next(model.parameters()).device
    classifier = judged.model.to(dev)
    generator = make_generator(dev, seed)
    labels = stats.classes.repeat_interleave(per_class)  # (N,)
    stats = replace(stats, means=stats.means.to(dev), variances=stats.variances.to(dev))
    z = torch.cat([sample_class(stats, int(c), per_class, generator) for c in stats.classes])  # (N, L)
    generated = (torch.cat([torch.sigmoid(model.decode(z[i:i + 5000])) for i in range(0, len(z), 5000)]) > 0.5)
    predicted, gen_features = classify(classifier, generated.float())
    test_predicted, test_features = classify(classifier, binarize_threshold(test.images))
    train = load_split("train", data_dir if data_dir is not None else run.config.data_dir,
                       dataset=run.config.dataset, class_names=run.config.class_names)
    pick = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))[:len(test.labels)]
    _, train_features = classify(classifier, binarize_threshold(train.images[pick]))
    test_stats = feature_statistics(test_features)
    return {
        "name": judged.name,
        "sha256": judged.sha256,
        "class_accuracy": accuracy(predicted, labels),
        "per_class": per_class_accuracy(predicted, labels),
        "test_accuracy": accuracy(test_predicted, test.labels),
        "fid": frechet_distance(*feature_statistics(gen_features), *test_stats),
        "fid_floor": frechet_distance(*test_stats, *feature_statistics(train_features)),
        "n_generated": len(labels),
        "seed": seed,
    }


def check_iw_k(iw_k: int, noise_size: int | None = None) -> None:
    """Refuse a negative K, or (given the noise one draw takes, `VAEModel.noise_size`) one whose noise block
    would not fit in memory."""
    limit = None if noise_size is None else MAX_NOISE // noise_size
    if iw_k < 0 or (limit is not None and iw_k > limit):
        where = "" if limit is None else f" and {limit:,} for {noise_size} latent units"
        raise VaelabError(f"--iw-k must be between 1{where} (or 0 to skip the IW estimate), got {iw_k}")


def read_eval(run: Run, *, strict: bool = False) -> EvalResult | None:
    """The run's eval.json if it is valid and scores exactly the run's current weights, else None.

    With `strict`, a missing, damaged or stale file raises ValueError saying which, in one line.
    """
    path = run.path / EVAL
    why = None
    try:
        if not path.is_file():  # missing, or a folder, FIFO or device someone put there
            why = "is not a regular file" if path.exists() or path.is_symlink() else "does not exist"
        elif path.stat().st_size > 1 << 24:  # a real one is a few kB; never read a planted giant
            why = "is damaged (larger than 16 MiB)"
        else:
            result = EvalResult.from_dict(json.loads(path.read_bytes()))
            if result.weights_sha256 != run.weights_sha256:
                why = f"scores other weights (step {result.step}) than the run holds now (step {run.step})"
    except OSError as exc:
        why = f"cannot be read ({exc.strerror or exc})"
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # not JSON, or not an EvalResult
        detail = " ".join(str(exc).split())  # one line, and not a forged novel
        why = f"is damaged ({detail if len(detail) <= 200 else detail[:199] + '…'})"
    if why is None:
        return result
    if strict:
        raise ValueError(f"{display(path)} {why}")
    return None


def keep_larger_iw(new: EvalResult, old: EvalResult | None) -> EvalResult:
    """`new`, but with `old`'s IW estimate when `old` scored the same weights and data with a larger K."""
    if old is None or old.log_likelihood is None or old.iw_k <= new.iw_k:
        return new
    if (old.weights_sha256, old.data_sha256) != (new.weights_sha256, new.data_sha256):
        return new
    return replace(new, log_likelihood=old.log_likelihood, log_likelihood_stderr=old.log_likelihood_stderr,
                   iw_k=old.iw_k, iw_seed=old.iw_seed)

"""Test-set scores: the ELBO and the importance-weighted estimate of log p(x).

Both are in nats per image, with standard errors over images. The IW estimate
(Burda, Grosse & Salakhutdinov 2015) draws K posterior samples per image,
vectorised over (K, B, D), and never drops a normalising constant, so it is
directly comparable with published MNIST log-likelihoods.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaelab import explore
from vaelab.checkpoint import EVAL, Run, load_run
from vaelab.data import (
    THRESHOLD_BYTE,
    DataMismatchWarning,
    Split,
    binarize,
    binarize_threshold,
    data_mismatches,
    load_split,
)
from vaelab.device import make_generator, resolve_device
from vaelab.errors import Diverged, VaelabError
from vaelab.evalfile import EvalResult, keep_larger_iw, read_eval
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
from vaelab.prepare import test_pixels_generator, test_pixels_words
from vaelab.resources import ThreadTuner

# Largest (K, B, D) block of decoder logits held at once: 2^20 floats, 4 MiB. Small
# blocks stay in cache and avoid page-faulting fresh memory; on this 2-core CPU they
# run the K=1000 test twice as fast as 64 MiB blocks (docs/benchmarks.md).
MAX_BLOCK = 1 << 20
MAX_NOISE = 1 << 22  # largest (K, B, L) block of noise drawn at once
JUDGE_STATS = 10000  # training images behind the class statistics of generation, as the figures use
JUDGE_PER_CLASS = 1000  # generated images per class: 10,000 for 10 classes, as many as the test images
SLOW_IW_K = 1000  # on a CPU an IW estimate this large takes minutes (the article's model: about one at 1,000)


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
    ll = ll_se = per_image = None
    if iw_k:
        per_image = iw_log_likelihood(model, x, k=iw_k, generator=generator, progress=progress)
        ll, ll_se = mean_and_stderr(per_image)
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
        active_units_by_layer=[int(active_units(m).sum()) for m in  # h1's draw of its own: the same for any K
                               model.layer_means(x, make_generator(x.device, seed))] if model.hierarchical else None,
        log_likelihood_per_image=None if per_image is None else per_image.cpu().double().tolist(),
    )


def evaluate_run(
    path: str | Path | Run,
    *,
    iw_k: int = 1000,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | None = None,
    progress: bool = False,
    save: bool = True,
    judge: str | Path | bool = True,
    judge_per_class: int = JUDGE_PER_CLASS,
    echo: Callable[[str], Any] | None = None,
) -> EvalResult:
    """Score a run on its test images, binarized as in training; save eval.json.

    `judge` True scores generated images with the judge shipped for the run's dataset
    (none for kmnist or a folder: then `judge` is None in the result), a path with that
    judge file, False not at all (eval.json then keeps an earlier judge's scores of the
    same weights). See `judge_run`. `echo`, if given, is told first what is to be scored, and where.
    Scores of other test files than the run's own never replace an eval.json of its own files for these
    weights.

    `path` may be a Run already loaded (its model is moved to `device`). The result names the weights
    (digest and step) and the test files it scored;
    data that differ from the files the run recorded raise a DataMismatchWarning
    naming them. A diverged run (non-finite weights or scores) raises Diverged
    and writes nothing. eval.json keeps, for the same weights and data, the
    importance-weighted estimate with the largest K so far.
    """
    check_iw_k(iw_k)
    run = path if isinstance(path, Run) else load_run(path)
    path = run.path
    check_iw_k(iw_k, run.model.noise_size)
    judged = find_judge(run, judge)
    codes = explore.encode_subset(run, n=JUDGE_STATS, seed=seed, data_dir=data_dir) if judged else None
    dev = resolve_device(device)
    model = run.model.to(dev)
    split = load_split("test", data_dir if data_dir is not None else run.config.data_dir,
                       dataset=run.config.dataset, class_names=run.config.class_names)
    differences = data_mismatches(run.data.get("sha256", {}), split.files)
    old = read_eval(run) if save else None
    keep_old = bool(differences) and old is not None and old.data_matches_run  # the run's own scores stay
    if differences:
        warnings.warn(f"the test files differ from the ones {display(path)} was trained with "
                      f"({'; '.join(differences)}); these scores are of other data"
                      + (f", and are not saved: {display(Path(path) / EVAL)} keeps the scores of the run's own "
                         "test files" if keep_old else ""), DataMismatchWarning, stacklevel=2)
    x = binarize(split.images, run.config.binarization, test_pixels_generator(run, dev, seed)).to(dev)
    if echo is not None:
        echo(scoring_line(path, iw_k, dev, judged=judged is not None))
    try:
        result = evaluate_model(model, x, iw_k=iw_k, seed=seed, epoch=run.epoch, progress=progress)
    except Diverged as exc:
        raise Diverged(f"{display(path)} cannot be scored: {exc}. Train again with a lower --lr") from None
    scores = None
    if judged is not None:
        scores = judge_run(run, judged, codes.stats, split, data_dir=data_dir, seed=seed, per_class=judge_per_class)
    result = replace(result, step=run.step, weights_sha256=run.weights_sha256, data_sha256=split.files,
                     data_matches_run=not differences, judge=scores, test_pixels=test_pixels_words(run, dev, seed))
    if save and not keep_old:
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
    wanted, ours = explore.image_shape(run), list(explore.classes_of(run).names)
    if shape != wanted or classes < len(ours):
        raise VaelabError(f"{describe(found)} classifies {shape[0]} x {shape[1]} images into {classes} classes, "
                          f"but {display(run.path)} makes {wanted[0]} x {wanted[1]} images of "
                          f"{len(ours)} classes; give a judge trained on the run's data "
                          "(`vaelab judge train`) with --judge, or --no-judge")
    named = (found.info.get("classes") or {}).get("names")
    if isinstance(named, list) and named[:len(ours)] != ours:  # class i must mean the same to both
        dataset = run.config.dataset
        fix = (f"omit --judge to use the one shipped for {dataset}, " if dataset and shipped_path(dataset) else
               "give one trained on the run's data with --judge (`vaelab judge train`), ")
        named_set = f" ({dataset})" if dataset not in (None, "folder") else ""
        raise VaelabError(f"{describe(found)} tells apart {_few(named)}, but {display(run.path)} makes images of "
                          f"{_few(ours)}{named_set}, so its verdicts would mean nothing; {fix}or add --no-judge")
    # A judge given by hand may share the class names (numbered folders all have 0..9) but not the images; a
    # shipped one goes with a named dataset, whose files are checked against the catalog's on every load.
    theirs, the_runs = found.info.get("data_sha256") or {}, run.data.get("sha256") or {}
    differ = sorted(name for name in set(theirs) & set(the_runs) if theirs[name] != the_runs[name])
    if differ and judge is not True:
        raise VaelabError(f"{describe(found)} was trained on other images than {display(run.path)} was "
                          f"({differ[0]}: {theirs[differ[0]][:12]}…, the run's {the_runs[differ[0]][:12]}…), so it "
                          "is not a judge of this run's images; give one trained on the run's data with --judge "
                          "(`vaelab judge train`), or add --no-judge")
    return found


def _few(names: list[str]) -> str:
    """A list of class names, shortened: '0, 1, 2, ...' or 'T-shirt/top, Trouser, Pullover, ...'."""
    return ", ".join(map(str, names[:3])) + (", ..." if len(names) > 3 else "")


@torch.inference_mode()
def judge_run(run: Run, judged: LoadedJudge, stats: ClassStats, test: Split, *,
              data_dir: str | None = None, seed: int = 0, per_class: int = JUDGE_PER_CLASS) -> dict[str, Any]:
    """The judge's scores of images the run generates with the article's recipe (eval.json's `judge`).

    For each class, `per_class` codes z = class mean + noise * sqrt(class variance) (`latent.sample_class`,
    with the class statistics of `JUDGE_STATS` training images, as the figures compute them), decoded to
    Bernoulli means and thresholded (`ink`: above 0.5, or for a model of dynamic draws from the real images'
    cut, 73 / 255): black-and-white images like the real ones the judge was trained on (threshold
    binarization). Sampled pixels would add salt-and-pepper noise that no real image has.
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
    generated = ink(torch.cat([torch.sigmoid(model.decode(z[i:i + 5000])) for i in range(0, len(z), 5000)]),
                    run.config.binarization)
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


def ink(means: torch.Tensor, binarization: str) -> torch.Tensor:
    """Generated images' Bernoulli means made black and white (bool) as the real images the judge compares
    them with are (bytes >= THRESHOLD_BYTE). A model trained on black-and-white images (threshold) gives
    each pixel's chance of ink: ink above 0.5, its likelier value. A model trained on dynamic draws
    (Bernoulli samples of the grey levels b / 255) gives the grey level itself, so the real images' cut
    applies: ink from THRESHOLD_BYTE / 255."""
    return means > 0.5 if binarization == "threshold" else means >= THRESHOLD_BYTE / 255


def scoring_line(path: str | Path, iw_k: int, device: torch.device, *, judged: bool) -> str:
    """What `evaluate_run` is about to do, for a log that shows no progress bar."""
    parts = ["the ELBO", *([f"log p(x) with IW K={iw_k:,}"] if iw_k else []), "active units",
             *(["the judge's scores of generated images"] if judged else [])]
    slow = "; on a CPU this takes minutes" if iw_k >= SLOW_IW_K and device.type == "cpu" else ""
    return f"{display(path)}: scoring its test images on {device.type} ({', '.join(parts[:-1])} and {parts[-1]}){slow}"


def check_iw_k(iw_k: int, noise_size: int | None = None) -> None:
    """Refuse a negative K, or (given the noise one draw takes, `VAEModel.noise_size`) one whose noise block
    would not fit in memory."""
    limit = None if noise_size is None else MAX_NOISE // noise_size
    if iw_k < 0 or (limit is not None and iw_k > limit):
        bound = "at least 1" if limit is None else f"between 1 and {limit:,} for {noise_size} latent units"
        raise VaelabError(f"--iw-k must be {bound} (or 0 to skip the IW estimate), got {iw_k}")

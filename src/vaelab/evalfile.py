"""eval.json: a run's test scores as a record, checked whole whenever it is read.

`evaluate.evaluate_run` writes it; the report, the explorer and the CLI read it
back with `read_eval`, which returns the scores only when the file is a valid
record of the weights the run holds now, so a score is never shown beside other
weights, and a damaged or planted file is named, in one line, instead of shown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from vaelab.checkpoint import EVAL, Run
from vaelab.files import display

# absent from eval.json files written before them
OPTIONAL_FIELDS = {"judge", "active_units_by_layer", "log_likelihood_per_image", "test_pixels"}


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
    # Mean KL of each latent dimension, sums to `kl`; with two stochastic layers (mlp2), z's given h1 at its
    # posterior mean (the model's `encode`), which do not sum to `kl`, the sampled KL of both layers.
    kl_per_dimension: list[float]
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
    # The IW estimate of each test image, in the order of the test files (its mean is log_likelihood): two runs
    # scored on the same images are compared image by image (a paired difference, `paired_stderr`). None
    # without an IW estimate, or in files written before it was kept.
    log_likelihood_per_image: list[float] | None = None
    # How the test images of the IW estimate were made black and white: "threshold", or the dynamic draw's
    # "seed S on DEVICE" (`prepare.test_pixels_words`); None in files written before it was kept.
    test_pixels: str | None = None

    def to_dict(self, *, per_image: bool = True) -> dict[str, Any]:
        """The record as eval.json holds it; without `per_image`, the summary alone (`vaelab eval --json`)."""
        values = asdict(self)
        if not per_image:
            del values["log_likelihood_per_image"]
        return values

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
    if r.test_pixels is not None and not isinstance(r.test_pixels, str):
        raise ValueError("test_pixels must be null or a string such as 'threshold' or 'seed 0 on cpu'")
    per_image = r.log_likelihood_per_image
    if per_image is not None:
        if r.log_likelihood is None or not isinstance(per_image, list) or len(per_image) != r.n_images:
            raise ValueError(f"log_likelihood_per_image must be null or a list of n_images ({r.n_images}) numbers, "
                             "with log_likelihood their mean")
        for i, value in enumerate(per_image):
            number(f"log_likelihood_per_image[{i}]", value)


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
                   iw_k=old.iw_k, iw_seed=old.iw_seed, log_likelihood_per_image=old.log_likelihood_per_image,
                   test_pixels=old.test_pixels)


def paired_stderr(x: Sequence[float], y: Sequence[float]) -> float:
    """The standard error of mean(x) - mean(y) when x[i] and y[i] are two runs' estimates for the same
    test image i: the spread of the per-image differences over sqrt(n).

    Scored on the same images, two runs share each image's difficulty, which dominates the spread of
    either one's estimates; combining their standard errors as if independent would count it twice.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"paired estimates need two equally long lists of at least two, got {len(x)} and {len(y)}")
    diffs = [u - v for u, v in zip(x, y, strict=True)]
    mean = math.fsum(diffs) / len(diffs)
    return math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))

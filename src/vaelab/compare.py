"""Two runs' test log-likelihoods compared image by image: `vaelab compare A B`.

Two runs scored on the same test images share each image's difficulty (a thick
"8" costs any model more nats than a "1"), and that difficulty is most of the
spread of either run's per-image estimates. So the standard error of the
difference of their means is the spread of the per-image *differences* over
√n (a paired comparison), usually many times smaller than the two standard
errors combined as if independent. Both come from the estimates each run's
eval.json keeps for every test image (`vaelab eval`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from vaelab.catalog import DATASETS
from vaelab.checkpoint import Run, load_run
from vaelab.errors import VaelabError
from vaelab.evalfile import EvalResult, paired_stderr, read_eval
from vaelab.files import display
from vaelab.presets import PAPER_K
from vaelab.rundir import still_training


@dataclass(frozen=True)
class Comparison:
    """The second run's IW log-likelihood minus the first's, in nats per image, on the same test images."""

    first: EvalResult
    second: EvalResult
    difference: float
    paired_stderr: float  # the spread of the per-image differences over sqrt(n)
    unpaired_stderr: float  # the two runs' standard errors combined as if independent: an overstatement
    # With dynamic binarization, each run's test pixels are one Bernoulli draw from the grey levels: the two
    # runs' draws, e.g. ("seed 0 on cpu", "seed 1 on cpu"), when they differ, else None.
    different_draws: tuple[str, str] | None = None

    @property
    def verdict(self) -> str:
        """'ahead' or 'behind' by more than two (paired) standard errors, else 'within noise'."""
        if abs(self.difference) <= 2 * self.paired_stderr:
            return "within noise"
        return "ahead" if self.difference > 0 else "behind"


def scores_of(run: Run, path: str | Path, iw_k: int | None = None) -> EvalResult:
    """The scores of the run (at `path`) of its current weights, with each test image's IW estimate; else a
    VaelabError saying what to run (with `--iw-k iw_k` if given: the other run's K, so the two compare)."""
    k = "" if iw_k is None else f" --iw-k {iw_k}"
    try:
        scores = read_eval(run, strict=True)
    except ValueError as exc:
        fix = (f"it is still training, so score a copy: vaelab copy {display(path)} --out DIR, then vaelab eval "
               f"DIR{k}" if still_training(path) else f"score the run first: vaelab eval {display(path)}{k}")
        raise VaelabError(f"{exc}; {fix}") from None
    if scores.log_likelihood is None:
        raise VaelabError(f"{display(path)} was scored without an IW estimate (--iw-k 0); score it: "
                          f"vaelab eval {display(path)}{k or ' --iw-k 1000'}")
    if scores.log_likelihood_per_image is None:
        raise VaelabError(f"{display(path)}/eval.json predates per-image estimates; score it again to keep them "
                          f"(the same seed gives the same estimate): vaelab eval {display(path)} --iw-k {scores.iw_k}")
    return scores


def _k_to_match(other: Run) -> int | None:
    """The K to score a run with so that it compares with `other`: other's own, if scored; the paper's for a
    preset run; else None (eval's default)."""
    scores = read_eval(other)
    if scores is not None and scores.log_likelihood is not None:
        return scores.iw_k
    return PAPER_K if other.config.preset else None


def dataset_title(name: str) -> str:
    """A named dataset as people call it: "MNIST", "Fashion-MNIST"."""
    return DATASETS[name].title


def test_pixels(run: Run, scores: EvalResult) -> str:
    """How the run's scored test images were made black and white: 'threshold', or the dynamic draw's seed
    and device, as eval.json recorded them (`prepare.test_pixels_words`); for a file written before it did,
    what training recorded, else the seed of the IW estimate (the scoring seed drew them then)."""
    if run.config.binarization != "dynamic":
        return run.config.binarization
    if scores.test_pixels is not None:
        return scores.test_pixels
    drawn = run.data.get("test_binarization")
    if isinstance(drawn, dict):
        return f"seed {drawn.get('seed', run.config.seed)} on {drawn.get('device', 'cpu')}"
    return f"seed {scores.iw_seed if scores.iw_seed is not None else scores.seed} (the scoring seed)"


def compare_runs(first: str | Path, second: str | Path) -> Comparison:
    """`second`'s log-likelihood minus `first`'s, paired over the test images both were scored on.

    Runs whose test images were binarized differently (threshold against dynamic) are refused: their
    likelihoods are of different data. Two dynamic runs may have drawn their test pixels differently
    (other seeds): still the same images, each drawn independently of the others, so the per-image
    differences are independent and their spread is still the difference's standard error; the
    comparison says so (`different_draws`)."""
    run_a, run_b = load_run(first), load_run(second)
    if run_a.config.dataset != run_b.config.dataset and {run_a.config.dataset, run_b.config.dataset} <= DATASETS.keys():
        raise VaelabError(f"{display(first)} was trained on {dataset_title(run_a.config.dataset)} and "
                          f"{display(second)} on {dataset_title(run_b.config.dataset)}: their log-likelihoods are "
                          "of different data and cannot be compared; compare runs of one dataset")
    a, b = scores_of(run_a, first, _k_to_match(run_b)), scores_of(run_b, second, _k_to_match(run_a))
    if run_a.config.binarization != run_b.config.binarization:
        raise VaelabError(f"{display(first)} was trained and scored on {run_a.config.binarization}-binarized images "
                          f"and {display(second)} on {run_b.config.binarization}-binarized ones: their "
                          "log-likelihoods are of different data and cannot be compared; compare runs trained "
                          "with the same --binarization")
    if a.n_images < 2:
        raise VaelabError(f"{display(first)} was scored on {a.n_images} test image: a comparison needs two or more")
    if a.data_sha256 != b.data_sha256 or a.n_images != b.n_images:
        raise VaelabError(f"{display(first)} and {display(second)} were scored on different test images, so they "
                          "cannot be compared image by image; score both on the same files (vaelab eval RUN "
                          "--data-dir DIR)")
    draws = (test_pixels(run_a, a), test_pixels(run_b, b))
    return Comparison(first=a, second=b, difference=b.log_likelihood - a.log_likelihood,
                      paired_stderr=paired_stderr(b.log_likelihood_per_image, a.log_likelihood_per_image),
                      unpaired_stderr=math.hypot(a.log_likelihood_stderr, b.log_likelihood_stderr),
                      different_draws=None if same_draw(*draws) else draws)


def same_draw(a: str, b: str) -> bool:
    """Whether two `test_pixels` descriptions are one draw: equal, or the same seed where one of them does
    not know its device ("seed 0 (the scoring seed)", from an eval.json older than the record, drawn on the
    scoring device, as "seed 0 on cpu" was)."""
    if a == b:
        return True
    seeds = [re.match(r"^seed (-?\d+)(?: on (\w+)| \(the scoring seed\))$", d) for d in (a, b)]
    if not all(seeds):
        return False
    (seed_a, device_a), (seed_b, device_b) = (m.groups() for m in seeds)
    return seed_a == seed_b and (device_a is None or device_b is None)

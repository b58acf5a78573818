"""vaelab.evalfile: eval.json is read back only when it is a whole, valid record of the run's current weights."""

import json
import math
import re
import shutil
from dataclasses import replace

import pytest

from conftest import forge_eval
from vaelab.checkpoint import load_run
from vaelab.evalfile import EvalResult, keep_larger_iw, paired_stderr, read_eval


@pytest.mark.parametrize("how, why", [
    ("missing", "does not exist"),
    ("not JSON", "is damaged (Expecting property name"),
    ("not an object", "is damaged (expected a JSON object, found list)"),
    ("missing field", "is damaged (fields ['elbo'] missing and [] unexpected)"),
    ("extra field", "is damaged (fields [] missing and ['extra'] unexpected)"),
    ("wrong type", "is damaged (elbo must be a finite number, found 'high')"),
    ("NaN", "is damaged (elbo must be a finite number, found nan)"),
    ("huge number", "is damaged (int too large to convert to float)"),
    ("deep nesting", "is damaged (maximum recursion depth exceeded"),
    ("not UTF-8", "is damaged ('utf-8' codec can't decode byte 0xff"),
    ("other weights", "scores other weights (step 1) than the run holds now (step"),
])
def test_forged_scores_are_named_in_one_line(trained_run, tmp_path, how, why):
    run = replace(load_run(trained_run), path=tmp_path)  # only eval.json is read: no need to copy the run
    shutil.copy(trained_run / "eval.json", tmp_path / "eval.json")
    assert read_eval(run) is not None
    forge_eval(tmp_path / "eval.json", how)
    assert read_eval(run) is None
    with pytest.raises(ValueError) as caught:
        read_eval(run, strict=True)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'eval.json'} {why}") and "\n" not in message and len(message) < 400


def test_scores_that_are_not_a_file_are_named(trained_run, tmp_path):
    (tmp_path / "eval.json").mkdir()
    with pytest.raises(ValueError, match=r"eval.json is not a regular file$"):
        read_eval(replace(load_run(trained_run), path=tmp_path), strict=True)


def _scores(trained_run) -> EvalResult:
    return EvalResult.from_dict(json.loads((trained_run / "eval.json").read_text()))


def test_a_record_round_trips_through_its_dict(trained_run):
    scores = _scores(trained_run)
    assert EvalResult.from_dict(json.loads(json.dumps(scores.to_dict()))) == scores
    older = ("judge", "active_units_by_layer", "log_likelihood_per_image")
    old = {k: v for k, v in scores.to_dict().items() if k not in older}
    assert EvalResult.from_dict(old) == replace(scores, judge=None, active_units_by_layer=None,
                                                log_likelihood_per_image=None)  # older files
    assert scores.to_dict(per_image=False) == {k: v for k, v in scores.to_dict().items()
                                               if k != "log_likelihood_per_image"}


def test_the_larger_k_of_the_same_weights_and_data_is_kept(trained_run):
    new = replace(_scores(trained_run), iw_k=10, log_likelihood=-95.0, log_likelihood_stderr=0.3, iw_seed=1,
                  log_likelihood_per_image=[-95.0] * 500)
    old = replace(new, iw_k=5000, log_likelihood=-94.0, log_likelihood_stderr=0.2, iw_seed=7, elbo=-99.0,
                  log_likelihood_per_image=[-94.0] * 500)
    kept = keep_larger_iw(new, old)
    assert (kept.iw_k, kept.log_likelihood, kept.log_likelihood_stderr, kept.iw_seed) == (5000, -94.0, 0.2, 7)
    assert kept.log_likelihood_per_image == [-94.0] * 500  # the estimate's images go with it
    assert kept.elbo == new.elbo  # only the IW estimate is carried over
    assert keep_larger_iw(new, replace(old, iw_k=10)) == new  # not larger
    assert keep_larger_iw(new, replace(old, weights_sha256="0" * 64)) == new  # other weights
    assert keep_larger_iw(new, replace(old, data_sha256={"t10k-images-idx3-ubyte": "0" * 64})) == new
    assert keep_larger_iw(new, replace(old, log_likelihood=None, log_likelihood_stderr=None)) == new
    assert keep_larger_iw(new, None) == new


@pytest.mark.parametrize("per_image, why", [
    ([-90.0] * 499, "log_likelihood_per_image must be null or a list of n_images (500) numbers"),
    ({"0": -90.0}, "log_likelihood_per_image must be null or a list of n_images (500) numbers"),
    ([-90.0] * 499 + [float("inf")], "log_likelihood_per_image[499] must be a finite number, found inf"),
    ([-90.0] * 499 + ["-90"], "log_likelihood_per_image[499] must be a finite number, found '-90'"),
])
def test_per_image_estimates_are_checked_like_every_other_field(trained_run, per_image, why):
    good = _scores(trained_run).to_dict()
    assert len(good["log_likelihood_per_image"]) == good["n_images"] == 500
    with pytest.raises(ValueError, match=re.escape(why)):
        EvalResult.from_dict({**good, "log_likelihood_per_image": per_image})
    with pytest.raises(ValueError, match="with log_likelihood their mean"):  # none without an estimate
        EvalResult.from_dict({**good, "log_likelihood": None, "log_likelihood_stderr": None})


def test_the_paired_standard_error_is_the_spread_of_the_differences():
    # differences 1, 0, 2, 0: mean 0.75, squared deviations 2.75 in all, sample variance 2.75 / 3, over n = 4
    assert math.isclose(paired_stderr([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 1.0, 4.0]), math.sqrt(2.75 / 3 / 4),
                        rel_tol=1e-15)
    shifted = [v + 100.0 for v in (-90.0, -80.5, -120.25, -70.0)]  # a constant gap: no uncertainty left
    assert paired_stderr(shifted, [-90.0, -80.5, -120.25, -70.0]) == 0.0
    with pytest.raises(ValueError, match="two equally long lists of at least two, got 3 and 2"):
        paired_stderr([1.0, 2.0, 3.0], [1.0, 2.0])

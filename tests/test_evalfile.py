"""vaelab.evalfile: eval.json is read back only when it is a whole, valid record of the run's current weights."""

import json
import shutil
from dataclasses import replace

import pytest

from conftest import forge_eval
from vaelab.checkpoint import load_run
from vaelab.evalfile import EvalResult, keep_larger_iw, read_eval


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
    old = {k: v for k, v in scores.to_dict().items() if k not in ("judge", "active_units_by_layer")}
    assert EvalResult.from_dict(old) == replace(scores, judge=None, active_units_by_layer=None)  # older files


def test_the_larger_k_of_the_same_weights_and_data_is_kept(trained_run):
    new = replace(_scores(trained_run), iw_k=10, log_likelihood=-95.0, log_likelihood_stderr=0.3, iw_seed=1)
    old = replace(new, iw_k=5000, log_likelihood=-94.0, log_likelihood_stderr=0.2, iw_seed=7, elbo=-99.0)
    kept = keep_larger_iw(new, old)
    assert (kept.iw_k, kept.log_likelihood, kept.log_likelihood_stderr, kept.iw_seed) == (5000, -94.0, 0.2, 7)
    assert kept.elbo == new.elbo  # only the IW estimate is carried over
    assert keep_larger_iw(new, replace(old, iw_k=10)) == new  # not larger
    assert keep_larger_iw(new, replace(old, weights_sha256="0" * 64)) == new  # other weights
    assert keep_larger_iw(new, replace(old, data_sha256={"t10k-images-idx3-ubyte": "0" * 64})) == new
    assert keep_larger_iw(new, replace(old, log_likelihood=None, log_likelihood_stderr=None)) == new
    assert keep_larger_iw(new, None) == new

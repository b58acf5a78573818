"""bench/step_parts.py times every part of vaelab's CPU step, and only those parts."""

import importlib.util
import sys
from pathlib import Path

import pytest

from vaelab.data import grey_levels, load_split

BENCH = Path(__file__).resolve().parents[1] / "bench" / "step_parts.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH.parent))  # it imports bench_steps beside it
    try:
        spec = importlib.util.spec_from_file_location("step_parts", BENCH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH.parent))


def test_each_part_of_a_step_is_timed_and_the_objective_with_and_without_autograd(bench):
    x_grey = grey_levels(load_split("train").images[:200])
    parts = bench.step_parts(x_grey, "iwae-k5", steps=3)
    assert list(parts) == ["batch", "forward", "zero_grad", "backward", "Adam", "sums"]
    assert all(0 < ms < 1000 for ms in parts.values())
    assert 0 < bench.forward_ms(x_grey, "vae-k1", 3, grad=False) < 1000
    assert 0 < bench.forward_ms(x_grey, "vae-k1", 3, grad=True) < 1000

"""bench/step_parts.py times every part of vaelab's CPU step, and only those parts."""

import pytest

from conftest import load_bench
from vaelab.data import grey_levels, load_split


@pytest.fixture(scope="module")
def bench():
    return load_bench("step_parts")


def test_each_part_of_a_step_is_timed_and_the_objective_with_and_without_autograd(bench):
    x_grey = grey_levels(load_split("train").images[:200])
    parts = bench.step_parts(x_grey, "iwae-k5", steps=3)
    assert list(parts) == ["batch", "forward", "zero_grad", "backward", "Adam", "sums"]
    assert all(0 < ms < 1000 for ms in parts.values())
    assert 0 < bench.forward_ms(x_grey, "vae-k1", 3, grad=False) < 1000
    assert 0 < bench.forward_ms(x_grey, "vae-k1", 3, grad=True) < 1000

"""vaelab.trainlog: the per-epoch log's columns, and the machines a run's epochs record."""

from vaelab.trainlog import machines


def _rows(*names):
    return [{"epoch": i, **({"machine": name} if name else {})} for i, name in enumerate(names, 1)]


def test_the_machines_are_named_once_each_in_the_order_they_first_trained():
    assert machines(_rows("cpu A", "cpu A")) == "cpu A"
    assert machines(_rows("cpu A", "NVIDIA H200, CUDA", "cpu A")) == "cpu A; NVIDIA H200, CUDA"


def test_epochs_from_before_machines_were_recorded_are_said_so():
    assert machines(_rows(None, None)) == "not recorded"
    assert machines(_rows(None, "cpu A")) == "cpu A; some passes not recorded"
    assert machines([]) == "not recorded"

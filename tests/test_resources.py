"""Threads adapted to what other processes leave free; memory checked before it is needed."""

import os
import subprocess
import sys
import time

import pytest
import torch

import vaelab.resources as resources
from vaelab.errors import VaelabError
from vaelab.resources import ThreadTuner, check_fits, pinned_threads, threads_for


def test_threads_follow_the_free_cores():
    assert threads_for(2.0, most=2) == 2
    assert threads_for(1.2, most=2) == 1  # a two-thread team with one core to share waits for its other half
    assert threads_for(1.6, most=2) == 2  # light background work: keep both
    assert threads_for(0.0, most=2) == 1  # always at least one
    assert threads_for(30.7, most=8) == 8  # never more than torch would use


def test_pinned_threads(monkeypatch):
    monkeypatch.delenv("VAELAB_THREADS", raising=False)
    assert pinned_threads() is None
    monkeypatch.setenv("VAELAB_THREADS", "auto")
    assert pinned_threads() is None
    monkeypatch.setenv("VAELAB_THREADS", "3")
    assert pinned_threads() == 3
    monkeypatch.setenv("VAELAB_THREADS", "two")
    with pytest.raises(VaelabError, match="VAELAB_THREADS='two' must be a positive number of threads, or 'auto'"):
        pinned_threads()


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux's /proc/stat and two cores")
def test_a_busy_core_takes_a_thread_away(monkeypatch):
    monkeypatch.delenv("VAELAB_THREADS", raising=False)
    cores = sorted(os.sched_getaffinity(0))[:2]
    before = torch.get_num_threads()
    os.sched_setaffinity(0, cores)  # two cores, as on the machine the project targets
    try:
        torch.set_num_threads(2)
        tuner = ThreadTuner(torch.device("cpu"))
        assert tuner.enabled and tuner.cores == frozenset(cores)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            os.sched_setaffinity(spinner.pid, cores[:1])
            time.sleep(0.3)
            tuner.adjust()  # start a window with the spinner running
            time.sleep(0.6)
            assert tuner.adjust() == 1 == torch.get_num_threads()
        finally:
            spinner.kill()
            spinner.wait()
        tuner.restore()
        assert torch.get_num_threads() == 2
    finally:
        os.sched_setaffinity(0, range(os.cpu_count()))
        torch.set_num_threads(before)


def test_threads_free_now_leaves_the_cores_others_keep_busy(monkeypatch):
    """One look at the load, for work that cannot adapt as it runs (scikit-learn's OpenMP t-SNE)."""
    monkeypatch.delenv("VAELAB_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(resources.time, "sleep", lambda seconds: None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for busy, ours, threads in ((0.25, 0.0, 1), (0.05, 0.0, 2), (0.5, 0.0, 1), (0.1, 0.05, 2)):
            samples = iter([(0.0, 0.0, 0.0), (0.25, busy, ours)])  # (wall, CPU seconds on our cores, ours)
            monkeypatch.setattr(resources, "_cpu_sample", lambda cores, s=samples: resources._Sample(*next(s)))
            assert resources.threads_free_now() == threads, (busy, ours)
        monkeypatch.setenv("VAELAB_THREADS", "3")
        assert resources.threads_free_now() == 3
        monkeypatch.delenv("VAELAB_THREADS")
        torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 or the user's own call: never more, as in training
        samples = iter([(0.0, 0.0, 0.0), (0.25, 0.0, 0.0)])  # an idle machine
        monkeypatch.setattr(resources, "_cpu_sample", lambda cores: resources._Sample(*next(samples)))
        assert resources.threads_free_now() == 1
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def two_core_tuner(monkeypatch):
    """Makes a tuner that adapts two threads on cores {0, 1} (fed fake /proc/stat samples by the test); torch's
    threads are given back afterwards."""
    monkeypatch.delenv("VAELAB_THREADS", raising=False)
    before = torch.get_num_threads()

    def make() -> ThreadTuner:
        torch.set_num_threads(2)
        tuner = ThreadTuner(torch.device("cpu"))
        tuner.cores = frozenset({0, 1})
        return tuner

    yield make
    torch.set_num_threads(before)


def test_the_thread_comes_back_when_the_other_process_stops(monkeypatch, two_core_tuner):
    """Fed the CPU times /proc/stat would show: (wall, CPU seconds on our two cores, ours)."""
    samples = iter([(0.0, 0.0, 0.0),
                    (1.0, 2.0, 1.1),  # others took 0.9 of a core while we spun on two threads
                    (2.0, 3.0, 2.0),  # we ran one thread for a second; others took nothing
                    (2.01, 3.02, 2.01)])  # too short a window to judge: no change
    monkeypatch.setattr(resources, "_cpu_sample", lambda cores: resources._Sample(*next(samples)))
    tuner = two_core_tuner()
    assert [tuner.adjust(), tuner.adjust(), tuner.adjust()] == [1, 2, 2]


def test_the_tuner_looks_at_the_load_at_most_four_times_a_second_however_often_it_is_asked(monkeypatch,
                                                                                           two_core_tuner):
    """Training asks after every batch; /proc/stat is read only once a quarter second has passed."""
    clock, looks = [100.0], []

    def sample(cores):  # others keep one of our two cores busy: (wall, CPU on our cores, ours)
        looks.append(clock[0])
        return resources._Sample(clock[0], 2.0 * (clock[0] - 100.0), clock[0] - 100.0)

    monkeypatch.setattr(resources, "_cpu_sample", sample)
    monkeypatch.setattr(resources.time, "monotonic", lambda: clock[0])
    tuner = two_core_tuner()
    asked = []
    for now in (100.1, 100.2, 100.3, 100.4, 100.5, 100.56, 100.6):
        clock[0] = now
        asked.append(tuner.adjust())
    assert looks == [100.0, 100.3, 100.56]  # at start, then each time 0.25 s had passed
    assert asked == [2, 2, 1, 1, 1, 1, 1]  # one thread from the first look on


def test_the_tuner_stays_out_of_the_way_when_pinned_or_on_a_gpu(monkeypatch):
    monkeypatch.setenv("VAELAB_THREADS", "1")
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(torch.device("cpu"))
        assert not tuner.enabled and torch.get_num_threads() == 1
        time.sleep(0.1)
        assert tuner.adjust() == 1
        tuner.restore()
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
    monkeypatch.delenv("VAELAB_THREADS")
    assert not ThreadTuner(torch.device("meta")).enabled


def test_work_that_cannot_fit_is_refused_naming_both_sizes():
    with pytest.raises(VaelabError, match=r"needs about 1048576\.0 GiB of memory but cpu has [\d.]+ GiB free"):
        check_fits(2**50, torch.device("cpu"), "this")
    check_fits(1024, torch.device("cpu"), "a kilobyte")

"""What the machine can give a run: CPU threads that stay fast when others are busy, and memory.

PyTorch's CPU worker threads spin while they wait for each other. When another
process keeps one of two cores busy, a two-thread team spends most of its time
waiting for the thread that lost its core, and an epoch takes several times as
long, while a single thread loses almost nothing (docs/benchmarks.md). So
training measures, four times a second, how much CPU time other processes took
on the cores it may use (from /proc/stat) and uses as many threads as there are
cores left for it. The arithmetic gives the same bits with one thread or
several (a test checks it), so this changes the speed, never the numbers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from vaelab.errors import VaelabError

THREADS_ENV = "VAELAB_THREADS"  # a number pins the threads; unset or "auto" adapts to the load


@dataclass(frozen=True)
class _Sample:
    wall: float  # seconds, monotonic
    busy: float  # CPU seconds all processes spent on our cores
    ours: float  # CPU seconds this process spent


def _cpu_sample(cores: frozenset[int]) -> _Sample | None:
    """CPU time spent on `cores` by everyone, and by this process; None where /proc/stat is missing."""
    try:
        with open("/proc/stat", "rb") as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            busy += user + nice + system + irq + softirq + steal
    t = os.times()
    return _Sample(time.monotonic(), busy / tick, t.user + t.system)


def threads_for(free_cores: float, most: int) -> int:
    """Threads to run when `free_cores` cores are left for us: never more than cores, at least one."""
    return max(1, min(most, int(free_cores + 0.5)))


def threads_free_now(window: float = 0.25) -> int:
    """How many threads to run now: this process's cores less those other processes kept busy over `window`
    seconds, and never more than torch's threads (OMP_NUM_THREADS, `torch.set_num_threads`), as training;
    VAELAB_THREADS, where set, wins. For work too short or too opaque to adapt as it runs, such as
    scikit-learn's OpenMP t-SNE, whose threads spin as PyTorch's do when a core is taken."""
    cores = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
    pinned = pinned_threads()
    if pinned is not None or not cores:
        return pinned or max(1, os.cpu_count() or 1)
    before = _cpu_sample(cores)
    if before is None:
        return min(len(cores), torch.get_num_threads())
    time.sleep(window)
    after = _cpu_sample(cores)
    others = max(0.0, (after.busy - before.busy) - (after.ours - before.ours)) / (after.wall - before.wall)
    return threads_for(len(cores) - others, min(len(cores), torch.get_num_threads()))


class ThreadTuner:
    """Adapts torch's CPU threads to the load other processes put on this process's cores.

    Call `adjust()` as often as you like (training does after every batch): it
    looks at the load (one read of /proc/stat) only once `interval` seconds have
    passed since it last looked, so a busy machine is noticed within a quarter of
    a second whether a step takes 3 ms or 300, and a call in between costs one
    clock read. It does nothing where threads are pinned, the work runs on a GPU,
    or the system does not say how busy its cores are.
    """

    def __init__(self, device: torch.device, interval: float = 0.25):
        self.interval = interval
        self.most = torch.get_num_threads()
        self.cores = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        pinned = pinned_threads()
        if pinned is not None:
            torch.set_num_threads(pinned)
        self.enabled = device.type == "cpu" and pinned is None and bool(self.cores)
        self._last = _cpu_sample(self.cores) if self.enabled else None
        self.enabled = self._last is not None

    def adjust(self) -> int:
        """Set and return the threads for the next stretch of work."""
        if not self.enabled or time.monotonic() - self._last.wall < self.interval:
            return torch.get_num_threads()
        now = _cpu_sample(self.cores)
        wall = now.wall - self._last.wall
        if wall < 0.05:  # too short to measure: CPU times tick every 10 ms
            return torch.get_num_threads()
        others = max(0.0, (now.busy - self._last.busy) - (now.ours - self._last.ours)) / wall
        self._last = now
        threads = threads_for(len(self.cores) - others, self.most)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads

    def restore(self) -> None:
        """Give torch back the threads it had."""
        torch.set_num_threads(self.most)


def pinned_threads() -> int | None:
    """The thread count VAELAB_THREADS pins, or None to adapt to the load."""
    value = os.environ.get(THREADS_ENV, "auto").strip()
    if value in ("", "auto"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise VaelabError(f"{THREADS_ENV}={value!r} must be a positive number of threads, or 'auto'")
    return int(value)


# --- memory --------------------------------------------------------------------
def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device`, or None where the system does not say."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_fits(need: int, device: torch.device, what: str) -> None:
    """Refuse up front, naming both sizes, work that would not fit in the device's free memory."""
    free = available_memory(device)
    if free is not None and need > free:
        raise VaelabError(
            f"{what} needs about {_gib(need)} of memory but {device.type} has {_gib(free)} free; "
            "choose smaller sizes or a bigger machine"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"

"""Choosing the device and making seeded generators on it."""

from __future__ import annotations

import hashlib
import os
import platform

import torch

from vaelab.errors import VaelabError


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice must be available.

    Every command that computes on a device gets it here, so on CUDA this also
    makes cuDNN use deterministic algorithms without autotuning, for the whole
    process. By default cuDNN may pick algorithms whose sums come out in another
    order from run to run (PyTorch's notes on reproducibility), for the backward
    and transposed convolutions of the conv model and the judge; then the same
    seed need not give the same weights twice, nor a resumed run continue bit for
    bit. The perceptron models use no cuDNN kernels.
    """
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    device = _choose(name, cuda, mps)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return device


def _choose(name: str, cuda: bool, mps: bool) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise VaelabError(
            "--device cuda: this PyTorch sees no CUDA GPU; install a CUDA build of torch "
            "(see the README) or use --device cpu"
        )
    if name == "mps" and not mps:
        raise VaelabError("--device mps: Apple's MPS backend is not available here; use --device cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise VaelabError(f"--device {name!r} is not one of auto, cpu, cuda, mps")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """The machine computing on `device`, in a few words: a GPU's name, or the CPU's model, vector unit and
    the cores this process may use. Each epoch of a run records it (metrics' "machine"), so a table of
    results names the machine that trained each run, wherever the table is made."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA"
    if device.type == "mps":
        return f"Apple {platform.machine()}, MPS"
    model = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass  # not Linux: the architecture's name will do
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({torch.backends.cpu.get_cpu_capability()}), {cores} cores, CPU"


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A private random stream on `device`, so runs never depend on global RNG state."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def flush_denormals() -> None:
    """Treat denormal floats as zero in CPU arithmetic, for this whole process.

    Adam's second-moment estimates of rarely-lit pixels decay into the denormal
    range, where x86 arithmetic is many times slower: without this, epochs of the
    article's run slow from 0.91 s to 1.05 s as they accumulate, and the final
    test ELBO is the same to every printed digit either way (docs/benchmarks.md).
    The flag is per thread and PyTorch's worker threads copy it when they start,
    so this must run before any other torch work: the CLI calls it first thing.
    """
    torch.set_flush_denormal(True)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Give `generator` a checkpoint's saved state; False if the state is another device's.

    Each device keeps its own kind of state (the CPU's Mersenne Twister is 5056
    bytes, CUDA's Philox seed and offset 16) and a generator refuses another's.
    Then it is seeded from the SHA-256 of the saved bytes instead: the same
    resume twice gives the same run, but not the stream the run drew before.
    """
    state = state.detach().cpu().contiguous()
    if state.dtype == torch.uint8 and state.numel() == generator.get_state().numel():
        try:
            generator.set_state(state)
            return True
        except RuntimeError:
            pass  # the right size but not a state this generator accepts: reseed below
    digest = hashlib.sha256(state.reshape(-1).view(torch.uint8).numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)  # 63 bits: every backend takes it
    return False


def state_origin(state: torch.Tensor) -> str:
    """The kind of device a saved generator state came from, told by its size."""
    sizes = {torch.Generator().get_state().numel(): "cpu", 16: "cuda"}
    return sizes.get(state.numel(), "another device")

"""vaelab.device: choosing the device, and on CUDA the deterministic cuDNN kernels that make runs repeat."""

import os

import pytest
import torch

from vaelab.device import describe, resolve_device
from vaelab.errors import VaelabError


@pytest.fixture
def cudnn_flags(monkeypatch):
    """cuDNN's two global flags at PyTorch's defaults, put back as they were after the test."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    return torch.backends.cudnn


def test_choosing_cuda_makes_cudnn_deterministic_without_autotuning(monkeypatch, cudnn_flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert (cudnn_flags.deterministic, cudnn_flags.benchmark) == (True, False)


def test_auto_picks_cuda_when_there_is_one_and_sets_the_flags_too(monkeypatch, cudnn_flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert cudnn_flags.deterministic and not cudnn_flags.benchmark


def test_the_cpu_leaves_cudnn_alone(cudnn_flags):
    assert resolve_device("cpu") == torch.device("cpu")
    assert (cudnn_flags.deterministic, cudnn_flags.benchmark) == (False, True)


def test_cuda_without_a_gpu_is_refused_with_the_fix(monkeypatch, cudnn_flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VaelabError, match="sees no CUDA GPU; install a CUDA build of torch"):
        resolve_device("cuda")
    assert not cudnn_flags.deterministic


def test_an_unknown_device_is_named(cudnn_flags):
    with pytest.raises(VaelabError, match="--device 'tpu' is not one of auto, cpu, cuda, mps"):
        resolve_device("tpu")


def test_the_cpu_is_described_by_its_vector_unit_and_the_cores_this_process_may_use():
    name = describe(torch.device("cpu"))
    cores = len(os.sched_getaffinity(0))
    assert name.endswith(f" ({torch.backends.cpu.get_cpu_capability()}), {cores} cores, CPU"), name
    assert len(name) <= 200 and name.isprintable()  # what a checkpoint's metrics may hold

"""Run directories: round trips exactly, loads without pickle, refuses damage clearly."""

import os
import stat

import pytest
import torch

from vaelab.checkpoint import (
    CHECKPOINT,
    Checkpoint,
    Position,
    atomic_write,
    load_checkpoint,
    load_run,
    prepare_run_dir,
    save_checkpoint,
)
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.model import VAE


def _checkpoint(tmp_path, **kw):
    torch.manual_seed(0)
    model = VAE(latent_size=4, hidden_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(2, 784)).elbo.sum().backward()
    optimizer.step()
    ckpt = Checkpoint(
        config=TrainConfig(latent_size=4, hidden_size=8, epochs=3),
        model_args=model.args,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        rng_state=torch.Generator().manual_seed(9).get_state(),
        position=Position(epoch=2, batch=0, step=20, elapsed=1.5),
        metrics=[{"epoch": 1, "reg": -1.0}, {"epoch": 2, "reg": -2.0}],
        data={"source": "test"},
        **kw,
    )
    path = prepare_run_dir(tmp_path / "run")
    save_checkpoint(path, ckpt)
    return path, ckpt, model, optimizer


def test_round_trip_is_exact(tmp_path):
    path, saved, model, optimizer = _checkpoint(tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.config == saved.config
    assert loaded.position == saved.position
    assert loaded.metrics == saved.metrics and loaded.data == saved.data
    assert torch.equal(loaded.rng_state, saved.rng_state)
    for k, v in saved.model_state.items():
        assert torch.equal(loaded.model_state[k], v)
    fresh = torch.optim.Adam(VAE(latent_size=4, hidden_size=8).parameters(), lr=1e-3)
    fresh.load_state_dict(loaded.optimizer_state)
    for i, entry in optimizer.state_dict()["state"].items():
        for k, v in entry.items():
            assert torch.equal(torch.as_tensor(fresh.state_dict()["state"][i][k]), torch.as_tensor(v))
    # The loaded model computes exactly what the saved one did.
    run = load_run(path)
    x = (torch.rand(5, 784) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(run.model.decode(run.model.encode(x)[0]), model.decode(model.encode(x)[0]))
    assert run.epoch == 2 and not run.model.training


def test_checkpoint_is_plain_safetensors_without_pickle(tmp_path):
    path, *_ = _checkpoint(tmp_path)
    raw = (path / CHECKPOINT).read_bytes()
    assert b"\x80\x04" not in raw[:64]  # no pickle protocol header
    from safetensors.torch import load_file

    tensors = load_file(path / CHECKPOINT)  # any safetensors reader opens it
    assert "model.decoder.layer3.weight" in tensors
    assert tensors["model.decoder.layer3.weight"].shape == (784, 8)


def test_files_are_written_atomically_with_normal_permissions(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]  # no temporary files left behind
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o044  # readable by others, as files normally are (mkstemp alone gives 0600)


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    atomic_write(target, b"good")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(VaelabError, match=r"cannot write .*/f: No space left on device; the previous"):
        atomic_write(target, b"bad")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["f"]


def test_missing_and_damaged_runs_get_clear_errors(tmp_path):
    with pytest.raises(VaelabError, match="no run at"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="not a vaelab run"):
        load_checkpoint(tmp_path / "empty")
    path, *_ = _checkpoint(tmp_path)
    raw = (path / CHECKPOINT).read_bytes()
    flipped = bytearray(raw)
    flipped[-100] ^= 0xFF  # one weight byte: safetensors alone would not notice
    header = bytearray(raw)
    header[20] = ord("}")  # broken JSON header
    for damaged in (raw[: len(raw) // 2], b"garbage" * 10, bytes(flipped), bytes(header), b""):
        (path / CHECKPOINT).write_bytes(damaged)
        with pytest.raises(VaelabError, match="damaged"):
            load_checkpoint(path)


def test_prepare_run_dir_protects_existing_data(tmp_path):
    path, *_ = _checkpoint(tmp_path)
    with pytest.raises(VaelabError, match="already holds a run"):
        prepare_run_dir(path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(VaelabError, match="not empty"):
        prepare_run_dir(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaelabError, match="is a file"):
        prepare_run_dir(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert prepare_run_dir(tmp_path / "empty").is_dir()
    assert prepare_run_dir(tmp_path / "new" / "nested").is_dir()


def test_mid_epoch_extras_round_trip(tmp_path):
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    sums = torch.tensor([-1.25, -80.5], dtype=torch.float64)
    path, *_ = _checkpoint(tmp_path, perm=perm, sums=sums)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.perm, perm) and torch.equal(loaded.sums, sums)

"""The command line, used as a newcomer would: real runs, real errors, no tracebacks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.checkpoint import load_checkpoint
from vaelab.cli import main


def _train(args, small_mnist):
    return main(["train", "--data-dir", str(small_mnist), "--latent-size", "8", "--quiet", *args])


def test_train_then_eval(small_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(["--out", str(run), "--epochs", "2"], small_mnist) == 0
    out = capsys.readouterr().out
    assert "lowerBound" in out and "test ELBO" in out and f"run written to {run}" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 2

    assert main(["eval", str(run), "--iw-k", "50", "--seed", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"elbo", "log_likelihood", "iw_k"} <= first.keys()
    assert first["iw_k"] == 50 and first["n_images"] == 500 and first["epoch"] == 2
    assert first["log_likelihood"] > first["elbo"]  # the IW bound is tighter
    assert main(["eval", str(run), "--iw-k", "50", "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # same seed, same numbers
    assert json.loads((run / "eval.json").read_text()) == first

    assert main(["eval", str(run), "--iw-k", "10"]) == 0
    table = capsys.readouterr().out
    assert "ELBO" in table and "IW K=10" in table and "±" in table


def test_config_file_and_flags(small_mnist, tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'epochs = 1\nlatent_size = 6\nlr = 0.002\ndata_dir = "{small_mnist}"\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--latent-size", "5", "--out", str(run), "--quiet"]) == 0
    config = load_checkpoint(run).config
    assert (config.epochs, config.latent_size, config.lr) == (1, 5, 0.002)  # the flag wins
    saved = json.loads((run / "config.json").read_text())
    assert saved["latent_size"] == 5 and saved["hidden_size"] is None
    # The saved config is itself a valid --config file.
    assert main(["train", "--config", str(run / "config.json"), "--out", str(tmp_path / "again"), "--quiet"]) == 0


def test_resume_from_the_command_line(small_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(["--out", str(run), "--epochs", "1"], small_mnist) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert load_checkpoint(run).position.epoch == 2
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot be given with --resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--latent-size", "0"], "latent_size (--latent-size) must be at least 1"),
        (["train", "--batch-size", "0"], "--batch-size) must be at least 1"),
        (["train", "--lr", "-0.001"], "--lr) must be a positive"),
        (["train", "--epochs", "-3"], "--epochs) must be at least 1"),
        (["train", "--data-dir", "/no/such/dir"], "/no/such/dir does not exist"),
        (["train", "--config", "/no/such.toml"], "config file /no/such.toml does not exist"),
        (["eval", "/no/such/run"], "no run at /no/such/run"),
        (["eval", "RUN", "--iw-k", "-1"], "--iw-k must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(args, message, tmp_path, capsys):
    args = [str(tmp_path / "run") if a == "RUN" else a for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("vaelab: error: ")
    assert not (tmp_path / "out" / "checkpoint.safetensors").exists()


def test_an_unwritable_figure_path_is_one_line(trained_run, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["curves", str(trained_run), "--out", str(tmp_path / "file" / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and "file" in err and err.count("\n") == 1


def test_empty_data_dir_and_damaged_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "no complete MNIST" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert main(["eval", str(tmp_path / "bad")]) == 2
    assert "damaged" in capsys.readouterr().err


def _vaelab(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "vaelab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_no_traceback_from_a_real_process(tmp_path):
    proc = _vaelab("train", "--latent-size", "0", "--out", str(tmp_path / "r"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == "vaelab: error: latent_size (--latent-size) must be at least 1, got 0"
    assert "Traceback" not in err


def test_ctrl_c_saves_a_checkpoint_and_exits_quickly(small_mnist, tmp_path):
    run = tmp_path / "run"
    proc = _vaelab("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "100000",
                   "--latent-size", "8")
    deadline = time.monotonic() + 60
    while not any(line.strip().startswith("2 ") for line in [proc.stdout.readline()]):
        assert time.monotonic() < deadline and proc.poll() is None  # wait for epoch 2's row
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 130
    assert "Traceback" not in err and "checkpoint is saved" in err and "--resume" in err
    ckpt = load_checkpoint(run)
    assert ckpt.position.epoch >= 2
    assert Path(run / "metrics.jsonl").read_text().count("\n") == ckpt.position.epoch

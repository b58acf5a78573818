"""The command line, used as a newcomer would: real runs, real errors, no tracebacks."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

from vaelab.checkpoint import load_checkpoint
from vaelab.cli import main


def _train(args, small_mnist):
    return main(["train", "--data-dir", str(small_mnist), "--latent-size", "8", "--quiet", *args])


def test_version_names_vaelab_torch_and_python_as_installed(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    python = ".".join(map(str, sys.version_info[:3]))
    # the package's metadata (pyproject.toml) and vaelab.__version__ agree, and torch is the one imported
    said = f"vaelab {metadata.version('vaelab')} (torch {torch.__version__}, Python {python})\n"
    assert capsys.readouterr().out == said


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
    saved = json.loads((run / "eval.json").read_text())
    per_image = saved.pop("log_likelihood_per_image")  # eval.json keeps each image's estimate; --json leaves them out
    assert saved == first and "log_likelihood_per_image" not in first
    assert len(per_image) == 500
    assert torch.tensor(per_image, dtype=torch.float64).mean().item() == first["log_likelihood"]

    assert main(["eval", str(run), "--iw-k", "10"]) == 0
    table = capsys.readouterr().out
    # a log shows no progress bar, so the first line says what is being scored (no judge for a folder's images)
    assert table.startswith(f"{run}: scoring its test images on cpu (the ELBO, log p(x) with IW K=10 and active "
                            "units)\n")
    assert main(["eval", str(run), "--iw-k", "0", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"{run}: epoch 2, step ")  # --quiet: straight to the scores
    from vaelab.evaluate import evaluate_run

    r = evaluate_run(run, iw_k=10, judge=False, save=False)  # the same scoring (seed 0), as numbers
    elbo = re.search(r"^  ELBO +(-\d+\.\d\d) ± (\d+\.\d\d)   \(reconstruction (-\d+\.\d\d), KL (\d+\.\d\d)\)$",
                     table, re.M)
    iw = re.search(r"^  log p\(x\), IW K=10 +(-\d+\.\d\d) ± (\d+\.\d\d)$", table, re.M)
    units = re.search(r"^  active units +(\d+) of 8   \(Var\[mu\] > 0\.01, Burda et al\. 2015\)$", table, re.M)
    assert elbo and iw and units, table
    assert elbo.groups() == tuple(f"{v:.2f}" for v in (r.elbo, r.elbo_stderr, r.loglike, r.kl))
    assert abs(float(elbo[3]) - float(elbo[4]) - float(elbo[1])) <= 0.011  # ELBO = reconstruction - KL
    assert iw.groups() == (f"{r.log_likelihood:.2f}", f"{r.log_likelihood_stderr:.2f}")
    assert int(units[1]) == r.active_units
    assert table.rstrip().endswith(f"saved to {run / 'eval.json'} (keeping the IW estimate with K=50 made earlier "
                                   "for these weights)")


def test_a_run_with_nothing_left_to_train_says_so_and_how_to_go_further(small_mnist, tmp_path, capsys):
    run, copy = tmp_path / "run", tmp_path / "copy"
    assert _train(["--out", str(run), "--epochs", "1"], small_mnist) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out == (f"{run} has already trained 1 epoch; nothing to do (to train it further: "
                                       "--epochs 2 or more)\n")  # and no "run written": nothing was
    assert main(["copy", str(run), "--out", str(copy)]) == 0
    assert capsys.readouterr().out.endswith(f"train it on: vaelab train --resume {copy} --epochs 2 (or more)\n")
    assert main(["copy", str(run), "--out", str(copy)]) == 2
    assert capsys.readouterr().err == (f"vaelab: error: {copy} already holds a run; continue it with `vaelab train "
                                       f"--resume {copy}` (with --epochs N or --stages N to train it further), or "
                                       "choose another --out\n")


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
        (["eval", "RUN", "--iw-k", "-1"], "--iw-k must be at least 1 (or 0 to skip the IW estimate), got -1"),
        (["train", "--latent-size", "20000"], "--latent-size) must be at most 10,000"),
        (["train", "--hidden-size", "100000"], "needs about 309.6 GiB of memory"),
        (["train", "--seed", str(2**64)], "--seed) must be an integer from 0 to 9223372036854775807"),
        (["train", "--epochs", "2000000"], "--epochs) must be at most 1,000,000"),
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


def test_sizes_beyond_what_fits_are_refused_up_front(trained_run, capsys):
    assert main(["eval", str(trained_run), "--iw-k", "10000000"]) == 2
    assert "--iw-k must be between 1 and 524,288 for 8 latent units" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(trained_run), "--seed", str(2**63)])
    assert "must be an integer from 0 to 9223372036854775807" in capsys.readouterr().err


def test_an_unwritable_figure_path_is_one_line(trained_run, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["curves", str(trained_run), "--out", str(tmp_path / "file" / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and "file" in err and err.count("\n") == 1


def test_empty_data_dir_and_damaged_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "no complete set of IDX files" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert main(["eval", str(tmp_path / "bad")]) == 2
    assert "damaged" in capsys.readouterr().err


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A test that fails before its vaelab process ends must not leave it training (`--epochs 100000`)."""
    yield
    while _started:
        proc = _started.pop()
        proc.kill()
        proc.wait()


def _vaelab(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)
    _started.append(proc)
    return proc


def test_no_traceback_from_a_real_process(tmp_path):
    proc = _vaelab("train", "--latent-size", "0", "--out", str(tmp_path / "r"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == "vaelab: error: latent_size (--latent-size) must be at least 1, got 0"
    assert "Traceback" not in err


def _training_past_epoch_2(small_mnist, run) -> subprocess.Popen:
    """`vaelab train` in a process of its own, once it has printed epoch 2's row."""
    proc = _vaelab("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "100000",
                   "--latent-size", "8")
    deadline = time.monotonic() + 60
    while not any(line.strip().startswith("2 ") for line in [proc.stdout.readline()]):
        assert time.monotonic() < deadline and proc.poll() is None
    return proc


@pytest.mark.parametrize("sig, status, said", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP"),
])
def test_a_signal_saves_a_checkpoint_and_exits_quickly(sig, status, said, small_mnist, tmp_path):
    run = tmp_path / "run"
    proc = _training_past_epoch_2(small_mnist, run)
    proc.send_signal(sig)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == status
    assert "Traceback" not in err and said in err and "checkpoint is saved" in err and "--resume" in err
    ckpt = load_checkpoint(run)
    assert ckpt.position.epoch >= 2
    assert Path(run / "metrics.jsonl").read_text().count("\n") == ckpt.position.epoch


@pytest.mark.parametrize("gap", [0.005, 0.05, 0.3])
def test_ctrl_c_pressed_twice_is_one_ctrl_c(gap, small_mnist, tmp_path):
    """A second Ctrl-C soon after the first waits with it for the batch (signals.REPEAT_S), and one that
    comes while Python shuts down ends it quietly: a checkpoint of where it stopped, one line, no traceback."""
    run = tmp_path / "run"
    proc = _training_past_epoch_2(small_mnist, run)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # 130, or killed by SIGINT itself when it came after Python's last moment of handling signals (a shell says 130)
    assert proc.returncode in (130, -signal.SIGINT)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.startswith("vaelab: stopped: interrupted (Ctrl-C) in epoch ") and "checkpoint is saved" in err, err
    assert load_checkpoint(run).position.epoch >= 2


def test_a_second_stop_signal_a_second_later_stops_at_once_and_says_what_was_kept(small_mnist, tmp_path,
                                                                                   monkeypatch, capsys):
    import vaelab.training as train_module
    from vaelab import signals

    clock = [0.0]
    monkeypatch.setattr(signals, "_clock", lambda: clock[0])
    real_step, real_save, steps = train_module.train_step, train_module.save_checkpoint, [0]

    def step(*args):
        steps[0] += 1
        if steps[0] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the 5th batch: stop after it
        return real_step(*args)

    def save(path, ckpt):
        if steps[0] >= 5:  # the stop's save hangs, and the user presses Ctrl-C again a second later
            clock[0] += signals.REPEAT_S
            os.kill(os.getpid(), signal.SIGINT)
        real_save(path, ckpt)

    monkeypatch.setattr(train_module, "train_step", step)
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    run = tmp_path / "run"
    assert _train(["--out", str(run), "--epochs", "2"], small_mnist) == 130
    err = capsys.readouterr().err
    assert err == (f"vaelab: stopped: interrupted (Ctrl-C), then again: stopped at once; {run} keeps its last "
                   f"checkpoint (the batches since are lost): continue with `vaelab train --resume {run} --epochs "
                   "2`\n")
    assert load_checkpoint(run).position.step == 0  # the checkpoint before the stop's save, intact
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    monkeypatch.setattr(train_module, "train_step", real_step)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_checkpoint(run).position.epoch == 2


def _python_start_up() -> float:
    """Seconds from starting Python to vaelab's signal handling, on this machine now: ~50 ms idle, several
    times that on a busy one. A signal before it gets Python's own traceback (vaelab/__main__.py)."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import vaelab.signals"], check=True)
    return time.monotonic() - start


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("delay", [0.1, 0.45, 1.15])  # after Python's own start-up
def test_a_signal_during_start_up_is_one_line_and_leaves_no_run(sig, status, delay, small_mnist, tmp_path):
    run = tmp_path / "run"
    start_up = _python_start_up()
    proc = _vaelab("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "100000",
                   "--latent-size", "8")
    time.sleep(start_up + delay)  # importing torch, reading the data, or the first epoch
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert proc.returncode == status
    assert not run.exists() or (run / "checkpoint.safetensors").exists()  # nothing, or a run to resume


@pytest.mark.parametrize("sig, how", [(signal.SIGHUP, "nohup vaelab train ..."),
                                      (signal.SIGINT, "vaelab train ... & in a shell script")])
def test_a_signal_the_command_was_started_ignoring_does_not_stop_it(sig, how, small_mnist, tmp_path):
    run = tmp_path / "run"
    proc = _vaelab("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "100000",
                   "--latent-size", "8", preexec_fn=lambda: signal.signal(sig, signal.SIG_IGN))  # as `how` starts it
    rows, deadline = [], time.monotonic() + 60

    def until_epoch(n):
        while len(rows) < n:
            assert time.monotonic() < deadline and proc.poll() is None
            line = proc.stdout.readline()
            if re.match(r"\s+\d+ ", line):
                rows.append(line)

    until_epoch(2)
    proc.send_signal(sig)
    until_epoch(4)  # two more epochs after it: the run went on
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err
    assert load_checkpoint(run).position.epoch >= 4


def test_a_closed_pipe_does_not_stop_training(small_mnist, tmp_path):
    """`vaelab train | head -1`: the reader goes away, the run goes on to the end."""
    run = tmp_path / "run"
    proc = _vaelab("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "6", "--latent-size", "8")
    proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == "" and load_checkpoint(run).position.epoch == 6


def test_a_failed_start_leaves_no_run_folder(small_mnist, tmp_path, capsys):
    run = tmp_path / "runs" / "new"
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda", "--out", str(run), "--quiet"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists()
    assert main(["train", "--data-dir", str(tmp_path / "none"), "--download", "--out", str(run), "--quiet"]) == 2
    assert "could not download" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_two_trainings_of_one_folder_the_second_is_refused(small_mnist, tmp_path):
    run = tmp_path / "run"
    args = ("train", "--data-dir", str(small_mnist), "--out", str(run), "--epochs", "3", "--latent-size", "8",
            "--quiet")
    procs = [_vaelab(*args) for _ in range(3)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2, 2]
    for code, err in results:
        if code:
            assert err.count("\n") == 1 and ("being written by another" in err or "already holds a run" in err)
    assert load_checkpoint(run).position.epoch == 3


def test_a_closed_terminal_stops_training_with_a_checkpoint(small_mnist, tmp_path):
    """SIGHUP after the terminal went away: every later write fails (EIO); the run is saved all the same."""
    import pty

    run = tmp_path / "run"
    main_fd, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "train", "--data-dir", str(small_mnist), "--out",
                             str(run), "--epochs", "100000", "--latent-size", "8"],
                            stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    _started.append(proc)
    os.close(terminal)
    seen, deadline = b"", time.monotonic() + 60
    while b"\n    2 " not in seen:
        assert time.monotonic() < deadline and proc.poll() is None
        seen += os.read(main_fd, 4096)  # the progress bar and the rows, as a terminal shows them
    os.close(main_fd)  # the terminal window closes
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 129
    assert load_checkpoint(run).position.epoch >= 2


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="a run's trainer is read from Linux's /proc/locks")
def test_copy_and_eval_say_when_the_run_is_still_training(trained_run, tmp_path, capsys):
    from vaelab.rundir import RunDir

    copy = tmp_path / "copy"
    with RunDir.existing(trained_run):  # as `vaelab train --resume` holds it
        assert main(["copy", str(trained_run), "--out", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"to {copy}: at the end of epoch 3 of 3, step 24, weights " in out
    assert f"is still training (pid {os.getpid()}); the copy stays at this checkpoint" in out
    assert load_checkpoint(copy).position.step == 24
    with RunDir.existing(copy):
        assert main(["eval", str(copy), "--iw-k", "0", "--no-judge"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{copy} is still training (pid {os.getpid()}): scoring its checkpoint at epoch 3, ")
    assert f"score a copy: vaelab copy {copy} --out DIR\n" in out
    assert main(["eval", str(copy), "--iw-k", "0", "--no-judge"]) == 0  # nobody trains it now: nothing said
    assert "still training" not in capsys.readouterr().out
    assert main(["copy", str(trained_run), "--out", str(copy)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_copy_of_a_run_stopped_mid_epoch_says_where_and_resumes_as_the_original(small_mnist, tmp_path, capsys,
                                                                                   monkeypatch):
    import vaelab.training as train_module
    from conftest import stop_after_steps
    from vaelab.signals import stop_after_batch

    stop_after_steps(monkeypatch, 5)  # Ctrl-C after the 5th batch of epoch 1
    run, copy = tmp_path / "run", tmp_path / "copy"
    assert _train(["--out", str(run), "--epochs", "2"], small_mnist) == 130
    monkeypatch.setattr(train_module, "stop_after_batch", stop_after_batch)
    capsys.readouterr()
    assert main(["copy", str(run), "--out", str(copy)]) == 0
    assert capsys.readouterr().out.startswith(f"copied {run} to {copy}: 5 batches into epoch 1 of 2, step 5, ")
    assert main(["eval", str(copy), "--iw-k", "0", "--no-judge", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"{copy}: 5 batches into epoch 1, step 5, weights ")  # as copy says
    for path in (run, copy):
        assert main(["train", "--resume", str(path), "--quiet"]) == 0
    a, b = load_checkpoint(run), load_checkpoint(copy)
    assert (a.position.epoch, a.position.step) == (b.position.epoch, b.position.step) == (2, 16)
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert [m["lower_bound"] for m in a.metrics] == [m["lower_bound"] for m in b.metrics]


def test_eval_refuses_a_judge_file_and_no_judge_together(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["eval", "runs/x", "--judge", "judge.safetensors", "--no-judge"])
    assert stopped.value.code == 2
    assert "argument --no-judge: not allowed with argument --judge" in capsys.readouterr().err


def test_a_flag_a_command_does_not_know_is_shown_with_that_commands_usage_and_the_likely_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "runs/x", "--iwk", "10"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: vaelab eval ")
    assert err.endswith("vaelab eval: error: unrecognized arguments: --iwk 10 (did you mean --iw-k?)\n")
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "1", "positional"])
    assert capsys.readouterr().err.endswith("vaelab train: error: unrecognized arguments: positional\n")
    with pytest.raises(SystemExit):
        main(["reproduce", "--table-only"])  # CELL is optional: only PAPER is asked for
    assert capsys.readouterr().err.endswith("vaelab reproduce: error: the following arguments are required: PAPER\n")


def test_small_slips_are_named_as_such(trained_run, tmp_path, capsys):
    assert main(["train", "--out", "", "--epochs", "1"]) == 2
    said = "vaelab: error: --out is empty; give the folder for the run, e.g. --out runs/mnist\n"
    assert capsys.readouterr().err == said  # not "--out . is not empty": the working folder is never meant
    assert main(["reproduce", "iwae", "--out", " "]) == 2
    assert capsys.readouterr().err.startswith("vaelab: error: --out is empty; give the folder for the cells' runs")
    assert main(["train", "--resume", str(trained_run), "--out", ""]) == 2  # given, though empty: refused
    assert "--out cannot be given with --resume" in capsys.readouterr().err
    file = trained_run / "config.json"
    assert main(["eval", str(file)]) == 2
    assert capsys.readouterr().err == (f"vaelab: error: {file} is a file, not a vaelab run; give the folder that "
                                       "`vaelab train --out` wrote\n")
    for text in ("10,,20", "10,", ",10"):
        with pytest.raises(SystemExit):
            main(["train", "--hidden-size", text])
        assert f"must be a width such as 96, or a list such as 512,256, got '{text}'" in capsys.readouterr().err

"""Run folders: one writer at a time, unique default names, nothing left by a failed start."""

import multiprocessing
import os

import pytest
import torch

import vaelab.rundir as rundir
from vaelab.checkpoint import CHECKPOINT
from vaelab.errors import VaelabError
from vaelab.rundir import LOCK, RunDir, prepare_run_dir


def test_prepare_run_dir_protects_existing_data(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"x")
    with pytest.raises(VaelabError, match="already holds a run"):
        prepare_run_dir(tmp_path / "run")
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


def test_a_second_writer_is_refused_while_the_first_holds_the_run(tmp_path):
    with RunDir.new(tmp_path / "run") as first:
        with pytest.raises(VaelabError, match=rf"being written by another vaelab process \(pid {os.getpid()}\)"):
            RunDir.new(tmp_path / "run")
        (first.path / CHECKPOINT).write_bytes(b"x")
        with pytest.raises(VaelabError, match="being written by another"):
            RunDir.existing(tmp_path / "run")
        if os.path.exists("/proc/locks"):  # where the trainer can be found: named, not "continue it with --resume"
            with pytest.raises(VaelabError, match=rf"being written by another vaelab process \(pid {os.getpid()}\); "
                                                  "wait for it to finish or stop it, or choose another --out"):
                RunDir.new(tmp_path / "run")
    with RunDir.existing(tmp_path / "run"):  # released: resuming is fine now
        pass
    with pytest.raises(VaelabError, match="already holds a run"):
        RunDir.new(tmp_path / "run")


def test_a_run_being_started_is_reported_as_busy_not_as_foreign_files(tmp_path):
    with RunDir.new(tmp_path / "run") as first:
        (first.path / "config.json").write_text("{}")  # written before the first checkpoint
        with pytest.raises(VaelabError, match="being written by another vaelab process"):
            RunDir.new(tmp_path / "run")
    with pytest.raises(VaelabError, match="not empty and not a vaelab run"):
        RunDir.new(tmp_path / "run")  # released: now the file is judged for what it is


def _claim(path, barrier, results):
    barrier.wait()
    try:
        with RunDir.new(path) as run:
            (run.path / CHECKPOINT).write_bytes(b"x")  # the first save
            barrier.wait()  # hold the lock until everyone has tried
            results.put(("ok", str(run.path)))
    except VaelabError as exc:
        barrier.wait()
        results.put(("refused", str(exc)))


def _race(target, path, n=4):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(path, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join()
    return outcomes


def test_writers_started_at_the_same_instant_one_wins(tmp_path):
    outcomes = _race(_claim, tmp_path / "run")
    assert sorted(kind for kind, _ in outcomes) == ["ok", "refused", "refused", "refused"]
    assert all("being written by another" in text or "already holds a run" in text
               for kind, text in outcomes if kind == "refused")


def test_default_names_never_collide_even_in_the_same_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20261125-120000")
    outcomes = _race(_claim, None)
    paths = sorted(path for kind, path in outcomes)
    assert [kind for kind, _ in outcomes] == ["ok"] * 4
    assert paths == ["runs/20261125-120000", "runs/20261125-120000-2", "runs/20261125-120000-3",
                     "runs/20261125-120000-4"]


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with RunDir.new(tmp_path / "a" / "b" / "run"):
            raise RuntimeError("no GPU")
    assert os.listdir(tmp_path) == []
    (tmp_path / "mine").mkdir()  # a folder the user made stays, empty
    with pytest.raises(KeyboardInterrupt):
        with RunDir.new(tmp_path / "mine"):
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "mine") == []


def test_a_failure_after_the_first_checkpoint_keeps_the_run(tmp_path):
    with pytest.raises(RuntimeError):
        with RunDir.new(tmp_path / "run") as run:
            (run.path / CHECKPOINT).write_bytes(b"x")
            raise RuntimeError("diverged")
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == b"x"


def test_a_folder_left_by_a_start_killed_during_its_first_save_can_be_reused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text("12345\n")  # what `kill -9` during the first save leaves
    (run / ".checkpoint.safetensors.0123456789abcdef.tmp").write_bytes(b"half")
    with RunDir.new(run):
        assert os.listdir(run) == [LOCK]
    (run / "notes.txt").write_text("someone else's")
    with pytest.raises(VaelabError, match="not empty and not a vaelab run"):
        RunDir.new(run)


def test_a_lock_file_planted_as_a_link_in_a_run_is_refused_and_its_target_untouched(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"x")
    (tmp_path / "victim").write_text("mine")
    (tmp_path / "run" / LOCK).symlink_to(tmp_path / "victim")
    with pytest.raises(VaelabError, match=rf"{LOCK} is a symbolic link; .* never through a link it did not make"):
        RunDir.existing(tmp_path / "run")
    assert (tmp_path / "victim").read_text() == "mine" and (tmp_path / "run" / LOCK).is_symlink()



def _config(small_mnist, epochs):
    from vaelab.config import TrainConfig

    return TrainConfig(data_dir=str(small_mnist), latent_size=8, epochs=epochs, binarization="dynamic")


def test_a_copy_is_one_checkpoint_of_a_run_in_training_and_resumes_bit_for_bit(small_mnist, tmp_path):
    from vaelab.checkpoint import load_checkpoint
    from vaelab.training import resume, train

    quiet = lambda s: None  # noqa: E731
    train(_config(small_mnist, 3), tmp_path / "straight", echo=quiet)
    train(_config(small_mnist, 2), tmp_path / "source", echo=quiet)
    saved = (tmp_path / "source" / CHECKPOINT).read_bytes()
    (tmp_path / "source" / "eval.json").write_text("{}")  # scores of the source's weights: not copied
    with RunDir.existing(tmp_path / "source"):  # the source is being trained meanwhile
        assert rundir.trainer(tmp_path / "source") == (os.getpid() if os.path.exists("/proc/locks") else None)
        with open(tmp_path / "source" / "metrics.jsonl", "a") as log:  # a pass ahead of the checkpoint
            log.write('{"epoch": 3}\n')
        copied = rundir.copy_run(tmp_path / "source", tmp_path / "copy")
    assert (copied.position.epoch, copied.position.step) == (2, 16)  # 8 batches of 128 a pass
    assert (tmp_path / "copy" / CHECKPOINT).read_bytes() == saved  # exactly the checkpoint, unchanged
    assert sorted(os.listdir(tmp_path / "copy")) == [LOCK, CHECKPOINT, "config.json", "metrics.jsonl"]
    assert len((tmp_path / "copy" / "metrics.jsonl").read_text().splitlines()) == 2  # the checkpoint's, not the file's
    assert rundir.trainer(tmp_path / "copy") is None

    resume(tmp_path / "source", epochs=3, echo=quiet)  # the source trains on: the copy stays where it was
    assert load_checkpoint(tmp_path / "copy").position.epoch == 2
    resume(tmp_path / "copy", epochs=3, echo=quiet)  # and continues as the source did from that checkpoint
    for run in ("source", "copy"):
        a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / run)
        assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
        assert [m["lower_bound"] for m in a.metrics] == [m["lower_bound"] for m in b.metrics]


def test_a_copy_never_overwrites_or_nests_and_a_failed_one_leaves_nothing(small_mnist, tmp_path):
    from vaelab.training import train

    train(_config(small_mnist, 1), tmp_path / "run", echo=lambda s: None)
    train(_config(small_mnist, 1), tmp_path / "other", echo=lambda s: None)
    other = (tmp_path / "other" / CHECKPOINT).read_bytes()
    with pytest.raises(VaelabError, match="already holds a run"):
        rundir.copy_run(tmp_path / "run", tmp_path / "other")
    assert (tmp_path / "other" / CHECKPOINT).read_bytes() == other
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(VaelabError, match="not empty and not a vaelab run"):
        rundir.copy_run(tmp_path / "run", tmp_path / "mine")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    with pytest.raises(VaelabError, match=r"inside the run .*run-copy"):
        rundir.copy_run(tmp_path / "run", tmp_path / "run" / "copy")
    assert not (tmp_path / "run" / "copy").exists()
    with pytest.raises(VaelabError, match="no run at"):
        rundir.copy_run(tmp_path / "missing", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(VaelabError, match="is damaged"):
        rundir.copy_run(tmp_path / "run", tmp_path / "new")
    assert not (tmp_path / "new").exists()

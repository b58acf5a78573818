"""Safe writes: atomic, never through a planted link, strict JSON, leftovers of killed writers removed."""

import json
import multiprocessing
import os
import signal
import time

import pytest

from vaelab.errors import VaelabError
from vaelab.files import (
    atomic_write,
    display,
    dumps,
    exclusive_lock,
    is_leftover,
    lock_holder,
    remove_leftovers,
    write_json,
)


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write(target, b"good")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(VaelabError, match=r"cannot write .*f\.bin: No space left.*intact"):
        atomic_write(target, b"bad")
    monkeypatch.undo()
    assert target.read_bytes() == b"good" and os.listdir(tmp_path) == ["f.bin"]


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").symlink_to(victim)
    write_json(run / "eval.json", {"elbo": -100.0}, root=run)
    assert victim.read_text() == "precious"
    assert not (run / "eval.json").is_symlink() and json.loads((run / "eval.json").read_text()) == {"elbo": -100.0}


def test_a_folder_link_inside_the_run_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "figures").symlink_to(elsewhere)
    with pytest.raises(VaelabError, match=r"figures is a symbolic link.*never through a link"):
        atomic_write(run / "figures" / "mix.png", b"png", root=run)
    assert os.listdir(elsewhere) == []


def test_missing_folders_inside_the_run_are_created(tmp_path):
    atomic_write(tmp_path / "figures" / "deeper" / "a.png", b"x", root=tmp_path)
    assert (tmp_path / "figures" / "deeper" / "a.png").read_bytes() == b"x"
    with pytest.raises(VaelabError, match="not inside"):
        atomic_write(tmp_path.parent / "outside.png", b"x", root=tmp_path)


def test_json_is_strict():
    with pytest.raises(VaelabError, match=r"non-finite number \('metrics'\]?\[0\]\['test_elbo'\] = nan\)"):
        dumps({"metrics": [{"test_elbo": float("nan")}]})
    with pytest.raises(VaelabError, match="inf"):
        dumps([1.0, float("inf")])
    assert dumps({"a": [1.5, None]}) == '{"a": [1.5, null]}'


def test_display_never_fails_on_bytes_that_are_not_utf8():
    name = os.fsdecode(b"/runs/r\xff")
    assert display(name) == "/runs/r\ufffd"
    display(name).encode("utf-8")  # printable and embeddable


def _stalled_writer(folder, started):
    """Write a file but stall before the rename, as a process killed mid-save would."""
    real_fsync = os.fsync

    def stall(fd):
        started.set()
        time.sleep(60)
        real_fsync(fd)

    os.fsync = stall
    atomic_write(os.path.join(folder, "checkpoint.safetensors"), b"x" * 1000)


def test_leftovers_of_a_killed_writer_are_removed_but_a_live_writer_is_left_alone(tmp_path):
    started = multiprocessing.Event()
    writer = multiprocessing.get_context("fork").Process(target=_stalled_writer, args=(str(tmp_path), started))
    writer.start()
    assert started.wait(30)
    [temp] = os.listdir(tmp_path)
    assert is_leftover(temp)
    assert remove_leftovers(tmp_path) == []  # its writer holds the lock: still being written
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert os.listdir(tmp_path) == [temp]  # what `kill -9` leaves behind
    assert remove_leftovers(tmp_path) == [tmp_path / temp]
    assert os.listdir(tmp_path) == []
    # an empty one just made may be a writer's between creating it and locking it: left alone, for now
    fresh = tmp_path / ".checkpoint.safetensors.00000000000000ff.tmp"
    fresh.write_bytes(b"")
    assert remove_leftovers(tmp_path) == [] and fresh.exists()
    os.utime(fresh, (time.time() - 5, time.time() - 5))
    assert remove_leftovers(tmp_path) == [fresh] and not fresh.exists()


def test_an_exclusive_lock_is_refused_while_held(tmp_path):
    lock = tmp_path / ".lock"
    with exclusive_lock(lock) as first:
        assert first
        with exclusive_lock(lock) as second:  # another open file: as another process would see it
            assert not second
    with exclusive_lock(lock) as again:
        assert again


@pytest.mark.parametrize("plant, what", [(lambda p, t: p.symlink_to(t), "a symbolic link"),
                                         (lambda p, t: p.mkdir(), "not a lock file")])
def test_a_link_or_folder_planted_where_a_lock_file_goes_is_refused_untouched(tmp_path, plant, what):
    (tmp_path / "target").write_text("mine")
    lock = tmp_path / ".lock"
    plant(lock, tmp_path / "target")
    with pytest.raises(VaelabError, match=rf"\.lock is {what}; .* Move it away \(e\.g\. `mv .*\.lock .*\.lock\.old`\)"):
        with exclusive_lock(lock):
            pass
    assert (tmp_path / "target").read_text() == "mine"


def _hold_lock(path, ready, release):
    with exclusive_lock(path):
        ready.set()
        release.wait(30)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="lock_holder reads Linux's /proc/locks")
def test_lock_holder_names_the_process_holding_the_lock_without_taking_it(tmp_path):
    lock = tmp_path / "run.lock"
    assert lock_holder(lock) is None  # no file
    lock.write_text("")
    assert lock_holder(lock) is None  # a file nobody locks
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(lock, ready, release))
    child.start()
    try:
        assert ready.wait(60)
        assert lock_holder(lock) == child.pid
        assert lock_holder(lock) == child.pid  # asking twice changes nothing
        with exclusive_lock(lock) as mine:
            assert mine is False  # asking never took the lock: it is still the child's
        other = tmp_path / "other.lock"
        with exclusive_lock(other):
            assert lock_holder(other) == os.getpid()  # another file's lock is told apart, by inode
            assert lock_holder(lock) == child.pid
    finally:
        release.set()
        child.join(60)
    assert lock_holder(lock) is None  # released when the holder exits


def test_writing_a_file_removes_what_killed_writes_of_it_left_and_nothing_else(tmp_path):
    import fcntl

    old = time.time() - 3600
    left = tmp_path / ".report.html.0123456789abcdef.tmp"  # a writer killed an hour ago
    young = tmp_path / ".report.html.1111111111111111.tmp"  # a writer that may be about to lock it
    held = tmp_path / ".report.html.2222222222222222.tmp"  # a live writer, old and slow
    other = tmp_path / ".eval.json.3333333333333333.tmp"  # another file's: its own write clears it
    for path in (left, young, held, other):
        path.write_bytes(b"half")
    for path in (left, held, other):
        os.utime(path, (old, old))
    with open(held, "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        atomic_write(tmp_path / "report.html", b"<html>", root=tmp_path)
    assert (tmp_path / "report.html").read_bytes() == b"<html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.html", young.name, held.name, other.name])
    atomic_write(tmp_path / "eval.json", b"{}", root=tmp_path)
    assert not other.exists() and young.exists() and held.exists()

"""vaelab.workers: helper processes that run vaelab commands, stop on the signal passed on, and say why they
failed."""

import signal
import time

import pytest

from vaelab import workers
from vaelab.errors import Stopped, TrainingInterrupted, VaelabError


def test_a_failed_helper_is_named_with_its_status_its_last_line_and_its_log(tmp_path):
    log = tmp_path / "helper-2.log"
    helpers = workers.start([["train", "--latent-size", "0", "--out", str(tmp_path / "r")]], [log])
    assert [h.number for h in helpers] == [2]
    failed = workers.wait(helpers)
    assert failed == [f"helper 2 (pid {helpers[0].process.pid}) ended with status 2: vaelab: error: latent_size "
                      f"(--latent-size) must be at least 1, got 0 (its log: {log})"]
    assert log.read_text().startswith("--- ") and " vaelab train --latent-size 0 --out " in log.read_text()


def test_helpers_that_succeed_are_not_named(tmp_path):
    helpers = workers.start([["presets"]] * 2, [tmp_path / "a.log", tmp_path / "b.log"])
    assert workers.wait(helpers) == []
    assert "iwae/1-layer/vae-k1" in (tmp_path / "b.log").read_text()


def test_the_signal_passed_on_stops_a_training_helper_as_it_would_stop_alone(small_mnist, tmp_path):
    log = tmp_path / "helper-2.log"
    helpers = workers.start([["train", "--data-dir", str(small_mnist), "--out", str(tmp_path / "run"),
                              "--epochs", "100000", "--latent-size", "8"]], [log])
    try:
        deadline = time.monotonic() + 300
        while "\n    1 " not in log.read_text():  # its first epoch's row
            assert time.monotonic() < deadline and helpers[0].process.poll() is None
            time.sleep(0.1)
        workers.stop(helpers, signal.SIGINT)
        failed = workers.wait(helpers)
    finally:
        helpers[0].process.kill()
    assert len(failed) == 1 and "ended with status 130: " in failed[0]
    assert "interrupted (Ctrl-C)" in log.read_text() and (tmp_path / "run" / "checkpoint.safetensors").is_file()
    workers.stop(helpers, signal.SIGINT)  # an ended helper is left alone


@pytest.mark.parametrize("exc, signum", [
    (TrainingInterrupted("stopped", exit_code=143), signal.SIGTERM),
    (TrainingInterrupted("stopped", exit_code=129), signal.SIGHUP),
    (Stopped(signal.SIGHUP), signal.SIGHUP),
    (KeyboardInterrupt(), signal.SIGINT),
    (VaelabError("a bad file"), signal.SIGTERM),
    (RuntimeError("a bug"), signal.SIGTERM),
])
def test_the_helpers_get_the_signal_that_stopped_the_command_or_sigterm(exc, signum):
    assert workers.signal_of(exc) == signum


def test_the_last_line_of_a_log(tmp_path):
    log = tmp_path / "log"
    log.write_text("one\n" + "x" * 5000 + "\nvaelab: error: the reason\n\n")
    assert workers.last_line(log) == "vaelab: error: the reason"
    log.write_text("")
    assert workers.last_line(log) == "it wrote nothing"
    assert workers.last_line(tmp_path / "gone") == "its log cannot be read"


def test_a_log_planted_as_a_link_is_refused_before_any_helper_starts(tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("mine\n")
    (tmp_path / "helper-3.log").symlink_to(target)
    with pytest.raises(VaelabError, match=r"helper-3.log is not a plain file \(a link, a folder, a device\); "
                                          r"vaelab appends a helper's output only to a file of its own"):
        workers.start([["presets"], ["presets"]], [tmp_path / "helper-2.log", tmp_path / "helper-3.log"])
    assert target.read_text() == "mine\n"
    assert (tmp_path / "helper-2.log").read_text() == ""  # opened, and nothing started to write to it

"""vaelab.signals: Ctrl-C, SIGTERM and SIGHUP held, turned into a stop after the batch, or raised, and the
previous handlers always given back."""

import os
import signal
import threading

import pytest

from vaelab import signals
from vaelab.errors import Stopped
from vaelab.signals import REPEAT_S, STOP, deferred, raising, report, stop_after_batch, stopped_by


@pytest.fixture
def handlers():
    """The stop signals' handlers before the test, checked to be back in place after it."""
    before = {sig: signal.getsignal(sig) for sig in STOP}
    yield before
    assert {sig: signal.getsignal(sig) for sig in STOP} == before


def _send(sig):
    os.kill(os.getpid(), sig)  # Python runs the handler before the next line


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, Stopped), (signal.SIGHUP, Stopped),
                                         (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_during_a_deferred_block_is_held_until_the_block_ends(handlers, sig, raised):
    done = []
    with pytest.raises(raised) as caught:
        with deferred():
            _send(sig)
            _send(signal.SIGTERM)  # a second one changes nothing: the first decides
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert report(caught.value) == (("vaelab: interrupted", 130) if sig == signal.SIGINT
                                    else (f"vaelab: stopped by {signal.Signals(sig).name}", 128 + sig))


def test_a_deferred_block_without_signals_ends_quietly_and_an_error_in_it_passes_through(handlers):
    with deferred():
        pass
    with pytest.raises(ValueError, match="inside"), deferred():
        raise ValueError("inside")


def test_the_first_signal_asks_training_to_stop_after_its_batch_and_a_later_second_stops_at_once(handlers,
                                                                                                monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(signals, "_clock", lambda: clock[0])
    with stop_after_batch() as stop:
        assert stop() == 0
        _send(signal.SIGINT)
        assert stop() == signal.SIGINT
        clock[0] += 0.02
        _send(signal.SIGINT)  # 20 ms on: the same Ctrl-C pressed twice, which waits with the first for the batch
        clock[0] += REPEAT_S - 0.02
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)  # a second on: the save hangs, say; stop at once
    assert stop() == signal.SIGINT
    with stop_after_batch() as stop:
        _send(signal.SIGINT)
        clock[0] += 0.02
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGTERM)  # another signal, however soon (a supervisor's kill): at once
    assert stop() == signal.SIGINT


def test_off_the_main_thread_the_handlers_are_left_alone(handlers):
    seen = []

    def work():
        with stop_after_batch() as stop, deferred():
            seen.append(stop())
            seen.append({sig: signal.getsignal(sig) for sig in STOP} == handlers)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [0, True]


def test_sigterm_and_sighup_raise_as_ctrl_c_does_until_the_old_handlers_are_back(handlers):
    with raising():
        assert signal.getsignal(signal.SIGINT) == handlers[signal.SIGINT]  # Python's own: KeyboardInterrupt
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with pytest.raises(Stopped) as caught:
                _send(sig)
            assert caught.value.signum == sig
    assert {sig: signal.getsignal(sig) for sig in STOP} == handlers


def test_training_says_what_stopped_it():
    assert stopped_by(signal.SIGINT) == "interrupted (Ctrl-C)"
    assert stopped_by(signal.SIGHUP) == "stopped by SIGHUP (the terminal closed)"
    assert stopped_by(signal.SIGTERM) == "stopped by SIGTERM"


@pytest.fixture
def sighup_ignored(handlers):
    """As `nohup` starts a command: SIGHUP ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGHUP, handlers[signal.SIGHUP])


def test_a_signal_the_process_was_started_ignoring_stays_ignored_everywhere(sighup_ignored):
    with deferred():
        _send(signal.SIGHUP)  # nothing held: the block ends quietly
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    with stop_after_batch() as stop:
        _send(signal.SIGHUP)
        assert stop() == 0 and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        _send(signal.SIGTERM)  # the others still stop it
        assert stop() == signal.SIGTERM
    with raising():
        _send(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        with pytest.raises(Stopped):
            _send(signal.SIGTERM)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN

"""How stop signals are taken: SIGTERM and SIGHUP as Ctrl-C, except where the caller made
them ignored (nohup); once taken, never twice where asked; nothing off the main thread."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from backup.interrupts import interrupts_as_keyboard_interrupt, interrupts_ignored
from verify.plugin import CleanUpGuard


@pytest.fixture(autouse=True)
def _handlers_put_back() -> Iterator[None]:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_are_ctrl_c_and_handlers_come_back(stop: signal.Signals) -> None:
    passed_on = []
    before = signal.getsignal(stop)
    with (
        pytest.raises(KeyboardInterrupt),
        interrupts_as_keyboard_interrupt(lambda: passed_on.append(True)),
    ):
        os.kill(os.getpid(), stop)
    assert passed_on == [True]
    assert signal.getsignal(stop) == before


def test_a_signal_ignored_before_stays_ignored() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    with interrupts_as_keyboard_interrupt():
        os.kill(os.getpid(), signal.SIGHUP)  # the SSH session closed: the job goes on
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_once_taken_the_next_interrupts_are_ignored() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts_as_keyboard_interrupt(once=True):
        os.kill(os.getpid(), signal.SIGTERM)
    # the handlers stay as the first interrupt left them until the block is left
    with interrupts_as_keyboard_interrupt(once=True):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during the clean-up: ignored
        os.kill(os.getpid(), signal.SIGTERM)


def test_off_the_main_thread_nothing_changes() -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with interrupts_as_keyboard_interrupt(), interrupts_ignored():
                pass
        except BaseException as exc:  # ValueError: signal only works in main thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert failures == []


def test_the_runs_end_is_not_interrupted() -> None:
    """verify's guard: interrupts are ignored from the end of the checks through the session's
    end (where pytest tears the fixtures down), also after an interrupted loop; then the
    handlers are what they were."""
    before = signal.getsignal(signal.SIGTERM)
    for interrupted in (False, True):
        guard = CleanUpGuard()
        loop = guard.pytest_runtestloop()
        next(loop)  # the checks run
        assert signal.getsignal(signal.SIGTERM) is before
        with pytest.raises(KeyboardInterrupt if interrupted else StopIteration):
            if interrupted:
                loop.throw(KeyboardInterrupt())
            else:
                loop.send(None)
        assert (signal.getsignal(signal.SIGTERM) is signal.SIG_IGN) != interrupted
        finish = guard.pytest_sessionfinish()
        next(finish)  # the fixtures are torn down
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: this test goes on
        with pytest.raises(StopIteration):
            finish.send(None)
        assert signal.getsignal(signal.SIGTERM) is before

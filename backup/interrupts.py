"""How a long command stops when it is told to: SIGTERM (a service manager, docker stop, a CI
job's timeout, kill) and SIGHUP (the SSH session or the terminal went away) take the path
of Ctrl-C, so that what the command started (n8n instances, restored copies, staging folders)
is stopped and removed; a rollback in progress ignores all three."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt(
    pass_on: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """SIGTERM and SIGHUP are handled like Ctrl-C while this is open (in the main thread,
    the only one Python lets handle signals; elsewhere nothing changes). ``pass_on`` runs
    first: what a terminal's Ctrl-C would also have reached (child processes) hears of it."""

    def interrupt(signum: int, frame: object) -> None:
        pass_on()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP are ignored while this is open (a rollback in progress)."""
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stopping}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""How a long command stops when it is told to: SIGTERM (a service manager, docker stop, a CI
job's timeout, kill) and SIGHUP (the SSH session or the terminal went away) take the path
of Ctrl-C, so that what the command started (n8n instances, restored copies, staging folders)
is stopped and removed; a rollback in progress ignores all three."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _handling(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """``handlers`` installed while the block runs, what was there put back afterwards; in the
    main thread only (the only one Python lets handle signals): elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt(
    pass_on: Callable[[], None] = lambda: None, *, once: bool = False
) -> Iterator[None]:
    """SIGTERM and SIGHUP are handled like Ctrl-C while this is open; one that was ignored
    when it opened (nohup's SIGHUP) stays ignored. ``pass_on`` runs first: what a terminal's
    Ctrl-C would also have reached (child processes) hears of it.

    ``once``: after the first interrupt, Ctrl-C included, all three are ignored, so that a
    second one cannot cut the clean-up short (a CI job's next SIGTERM; a process group's
    SIGTERM and the controller's pass-on, which arrive together at pytest-xdist's workers)."""

    def interrupt(signum: int, frame: object) -> None:
        if once:
            for sig in STOPPING:
                signal.signal(sig, signal.SIG_IGN)
        pass_on()
        raise KeyboardInterrupt

    taken = STOPPING if once else STOPPING[1:]  # Ctrl-C itself is Python's KeyboardInterrupt
    with _handling(
        {sig: interrupt for sig in taken if signal.getsignal(sig) is not signal.SIG_IGN}
    ):
        yield


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP are ignored while this is open (a rollback in progress)."""
    with _handling(dict.fromkeys(STOPPING, signal.SIG_IGN)):
        yield

"""Progress for long steps: a line redrawn in place on a terminal, nothing in a pipe or a log.

Hand-written on purpose: tqdm (tried first) drew nothing on the pseudo-terminals of this
project's machines, and what is needed here is one counter line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Item = TypeVar("Item")
_CLEAR_LINE = "\r\x1b[K"


def _on_terminal() -> bool:
    return sys.stderr.isatty()


def _draw(text: str) -> None:
    sys.stderr.write(f"{_CLEAR_LINE}{text}")
    sys.stderr.flush()


def progress(
    items: Iterable[Item], description: str, *, total: int | None = None
) -> Iterator[Item]:
    """Iterate over ``items``, showing ``description: n[/total]`` on a terminal."""
    if not _on_terminal():
        yield from items
        return
    count = 0
    _draw(f"{description}: 0" + (f"/{total}" if total else ""))
    try:
        for item in items:
            yield item
            count += 1
            _draw(f"{description}: {count}" + (f"/{total}" if total else ""))
    finally:
        _draw("")


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[], None]]:
    """Steps of work that is not a loop; yields the function that advances the counter."""
    done = [0]

    def advance() -> None:
        done[0] += 1
        if _on_terminal():
            _draw(f"{description}: step {done[0]}/{total}")

    if _on_terminal():
        _draw(f"{description}: step 0/{total}")
    try:
        yield advance
    finally:
        if _on_terminal():
            _draw("")

"""A value that must never be printed: its repr and str hide it, so that tracebacks, pytest's
``-l`` locals, fixture reprs and log lines show a placeholder instead."""

from __future__ import annotations

HIDDEN = "Secret(***)"


class Secret:
    """Holds a secret string; only :meth:`reveal` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it straight to the call that needs it, keep no copy."""
        return self._value

    def __repr__(self) -> str:
        return HIDDEN

    __str__ = __repr__

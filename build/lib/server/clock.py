"""The server's wall clock, in one place, so that tests move time instead of sleeping."""

from __future__ import annotations

import time

_offset = 0.0


def now() -> float:
    return time.time() + _offset


def epoch() -> int:
    """Now in whole epoch seconds: how every stored time is kept."""
    return int(now())


def advance(seconds: float) -> None:
    """Tests only: move the clock forward."""
    global _offset
    _offset += seconds


def reset() -> None:
    """Tests only: back to real time."""
    global _offset
    _offset = 0.0

"""The server's wall clock, in one place, so that tests move time instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime

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


# Beyond this, datetime cannot format: a time this far out means "never".
MAX_ISO_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


def iso_utc(epoch: int) -> str:
    """Epoch seconds as API answers and the CLI show them: ISO 8601 in UTC."""
    moment = datetime.fromtimestamp(min(epoch, MAX_ISO_EPOCH), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

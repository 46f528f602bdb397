"""Fixtures of the security tests."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from server import clock as server_clock

Clock = ModuleType


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The server's clock (rotation, revocations, rate limits, token checks), moved
    forward with `clock.advance(seconds)` so that "after the reuse interval" needs no
    sleep; back on real time afterwards."""
    server_clock.reset()
    yield server_clock
    server_clock.reset()

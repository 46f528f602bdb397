"""Security events: one JSON line each on the `auth.security` logger.

Every line has `event`, `ts` (epoch seconds) and always the keys `user_id`,
`session_id`, `ip` (the canonical client address), `user_agent` and `route` (the matched
route's path template, such as /api/users/{id}), null where unknown; the request-derived
ones are filled in from the request. Never a token, password or hash. Events:
- accounts and sessions (`AUDIT_EVENTS`): signup, signin, signout, refresh_reused,
  password_changed, user_updated (an admin changed roles or the disabled flag),
  user_deleted, and the revocations named after their `RevokeReason`: session_revoked,
  others_revoked, user_disabled, role_removed; key_rotated;
- what a client can cause at will: signin_failed, signin_refused (a disabled account),
  password_change_failed, rate_limited, csrf_failed (cookie mode: a request spending the
  session cookie without the right X-CSRF-Token or from a foreign origin),
  session_cookie_invalid (a session cookie that does not decrypt).
Alert on `refresh_reused`: it means a refresh token was stolen or replayed.

Nothing a client sends can make this log grow without bound:
- Events a client can cause at will are summarised per key (`SUMMARISED`): the first of
  a key in a `SUMMARY_WINDOW` is logged, the rest are counted and reported in one line
  when the window ends, e.g. `{"event": "rate_limited", "suppressed": 4711, "window":
  60, "since": ..., "ip": ..., "route": ...}`.
- Every line draws on a token bucket (`LINES_PER_SECOND`, bursts of `BURST`); the
  events that matter most (`AUDIT_EVENTS`) have a bucket of their own, so a flood of
  the others cannot crowd them out. A line without a token is counted, and the counts
  are reported in one `events_dropped` line at most once a second.
Summaries fall due on the next event or on `flush_events()`; run
`run_event_summaries()` for the life of the app so they come out in a quiet spell too.
Time is the server clock (`clock.now()`), so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from . import clock
from .clientaddr import address_of

logger = logging.getLogger("auth.security")
MAX_USER_AGENT = 256
STANDARD_FIELDS = ("user_id", "session_id", "ip", "user_agent", "route")
SUMMARY_WINDOW = 60  # seconds
# Event -> the fields whose values make its summary key.
SUMMARISED: dict[str, tuple[str, ...]] = {
    "rate_limited": ("ip", "route"),
    "signin_failed": ("ip",),
    "csrf_failed": ("ip", "route", "reason"),
    "session_cookie_invalid": ("ip", "route"),
}
# Events that change an account, a session or a key, exactly as they are emitted (the
# revocations by their RevokeReason value); they have their own allowance of lines.
AUDIT_EVENTS = frozenset(
    {
        "signup",
        "signin",
        "signout",
        "refresh_reused",
        "password_changed",
        "user_updated",
        "user_deleted",
        "user_disabled",
        "role_removed",
        "session_revoked",
        "others_revoked",
        "key_rotated",
    }
)
LINES_PER_SECOND = 50.0  # per bucket and process
BURST = 500
MAX_SUMMARY_KEYS = 10_000  # beyond it, events of new keys are logged (and capped) alone
REPORT_INTERVAL = 1.0  # seconds from a drop, or the last report, to the next report
FLUSH_INTERVAL = 1.0  # seconds between run_event_summaries' flushes


class TokenBucket:
    """At most `rate` lines a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = float(burst), clock.now()

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)  # the test clock may be reset
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class _Window:
    event: str
    start: float
    level: int
    key_fields: dict[str, object]
    suppressed: int = 0


@dataclass
class EventLog:
    """The summaries and caps; one per process (`_events`)."""

    windows: dict[tuple, _Window] = field(default_factory=dict)
    audit: TokenBucket = field(
        default_factory=lambda: TokenBucket(LINES_PER_SECOND, BURST)
    )
    other: TokenBucket = field(
        default_factory=lambda: TokenBucket(LINES_PER_SECOND, BURST)
    )
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_since: float = 0.0
    last_report: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, record: dict[str, object], level: int) -> None:
        event, now = str(record["event"]), clock.now()
        with self.lock:
            self._flush(now)
            if not self._opens_window(event, record, level, now):
                return
            self._emit(event, record, level, now)

    def flush(self, everything: bool = False) -> None:
        with self.lock:
            self._flush(clock.now(), everything)

    def _opens_window(
        self, event: str, record: dict[str, object], level: int, now: float
    ) -> bool:
        """False if the event falls in an open window of its key (counted there)."""
        spec = SUMMARISED.get(event)
        if spec is None:
            return True
        key = (event, *(record.get(name) for name in spec))
        window = self.windows.get(key)
        if window is not None:
            window.suppressed += 1
            return False
        if len(self.windows) < MAX_SUMMARY_KEYS:
            fields = {name: record.get(name) for name in spec}
            self.windows[key] = _Window(event, now, level, fields)
        return True

    def _emit(
        self, event: str, record: dict[str, object], level: int, now: float
    ) -> None:
        bucket = self.audit if event in AUDIT_EVENTS else self.other
        if bucket.take(now):
            logger.log(level, json.dumps(record, ensure_ascii=True))
        else:
            if not self.dropped:
                self.dropped_since = now
            self.dropped[event] += int(record.get("suppressed") or 0) or 1

    def _flush(self, now: float, everything: bool = False) -> None:
        """Report the windows that ended (they end in the order they began), then the
        lines dropped for want of a token. `everything`: as if all had ended."""
        while self.windows:
            key, window = next(iter(self.windows.items()))
            if not everything and window.start <= now < window.start + SUMMARY_WINDOW:
                break
            del self.windows[key]
            if window.suppressed:
                self._emit(window.event, _summary(window), window.level, now)
        due = max(self.last_report, self.dropped_since) + REPORT_INTERVAL
        if self.dropped and (everything or not self.dropped_since <= now < due):
            logger.warning(json.dumps(_dropped_line(self.dropped, self.dropped_since)))
            self.dropped.clear()
            self.last_report = now


def _summary(window: _Window) -> dict[str, object]:
    record: dict[str, object] = _blank(window.event)
    record.update(window.key_fields)
    record.update(
        suppressed=window.suppressed,
        window=SUMMARY_WINDOW,
        since=int(window.start),
    )
    return record


def _dropped_line(dropped: Counter[str], since: float) -> dict[str, object]:
    record = _blank("events_dropped")
    record.update(dropped=dict(sorted(dropped.items())), since=int(since))
    return record


def _blank(event: str) -> dict[str, object]:
    record: dict[str, object] = {"event": event, "ts": clock.epoch()}
    record.update(dict.fromkeys(STANDARD_FIELDS))
    return record


_events = EventLog()


def log_event(
    event: str,
    request: web.Request | None = None,
    *,
    level: int = logging.INFO,
    **fields: object,
) -> None:
    """Log one security event. `fields` add to or override the standard ones (a None
    does not hide what the request says)."""
    if not logger.isEnabledFor(level):
        return
    record = _blank(event)
    if request is not None:
        record["ip"] = address_of(request)
        record["user_agent"] = request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
        record["route"] = route_of(request)
    record.update({k: v for k, v in fields.items() if v is not None or k not in record})
    _events.log(record, level)


def route_of(request: web.BaseRequest) -> str | None:
    """The matched route's path template; None for unmatched paths (404s)."""
    match_info = getattr(request, "match_info", None)
    resource = getattr(getattr(match_info, "route", None), "resource", None)
    return None if resource is None else resource.canonical


def flush_events(everything: bool = False) -> None:
    """Write the summaries and drop counts that have fallen due; with `everything`
    (at shutdown), those of the windows still open too."""
    _events.flush(everything)


async def run_event_summaries(every: float = FLUSH_INTERVAL) -> None:
    """Flush due summaries every `every` seconds, for the life of the app: run it as a
    background task in a cleanup context and cancel it at shutdown, which writes the
    counts still open."""
    try:
        while True:
            await asyncio.sleep(every)
            flush_events()
    finally:
        flush_events(everything=True)


def reset_events() -> None:
    """Tests only: forget open windows, counts and spent allowances."""
    global _events
    _events = EventLog()

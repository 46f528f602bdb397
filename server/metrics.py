"""Prometheus metrics: one observer that the service, the middleware and the background
tasks tell what happened, and that `GET /metrics` renders.

`Metrics` does nothing (`metrics.enabled = false`); `PrometheusMetrics` counts. Every
family and label value is listed here, each label value created at zero so that a
rate() or an alert works from the first event.

Security events and metrics are counted in one place: `AuthService._event` hands each
event to `Metrics.event`, which counts the events of `SIGNIN_EVENTS`, `REVOKING_EVENTS`
and sign-ups. A flow that logs no event calls the method it needs
(`signin`, `refresh`, `sessions_revoked`, ...).

Cost: counters and gauges are written as they happen (a few per sign-in or refresh,
next to a database write or a bcrypt hash). The request-duration histogram is on every
request, the cached protected route included, so it only adds to plain lists in
process (`request`); its totals reach prometheus-client when flushed: before every
scrape, every `FLUSH_INTERVAL` seconds when several workers share the port, and when
the app stops.

Several workers (`--workers N`): prometheus-client's multiprocess mode, the way it is
used under gunicorn (server/multiproc.py): each worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR and a scrape merges the files of every worker, so every worker
answers with the same totals: counters exact at once, request durations as of each
worker's last flush (at most FLUSH_INTERVAL old). prometheus-client picks multiprocess
mode when it is first imported, so it is imported here only when a PrometheusMetrics is
built (in the worker, after the directory was set up).
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiohttp import web

from storage import PurgeResult, RefreshOutcome

from .errors import ErrorCode

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram, Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_INTERVAL = 1.0  # seconds: how stale another worker's request durations may be
UNMATCHED = "unmatched"  # the route label of paths no route matched (404, 405)
# Request durations: the cached protected route takes a fraction of a millisecond, a
# sign-in a bcrypt hash (about 0.3 s at cost 12).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class SigninResult(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # wrong password or unknown user
    DISABLED = "disabled"  # the right password of a disabled account
    RATE_LIMITED = "rate_limited"


MISSING = "missing"  # a refresh request without a refresh token
# The storage's outcome of presenting a refresh token -> the label of API.md.
REFRESH_OUTCOMES: Mapping[RefreshOutcome, str] = {
    RefreshOutcome.ROTATED: "rotated",
    RefreshOutcome.REPLAYED: "replayed",
    RefreshOutcome.VALID: "unchanged",
    RefreshOutcome.UNKNOWN: "unknown",
    RefreshOutcome.EXPIRED: "expired",
    RefreshOutcome.REUSED: "reused",
    RefreshOutcome.REVOKED: "revoked",
}
REFRESH_LABELS = (*REFRESH_OUTCOMES.values(), MISSING)
REVOKE_REASONS = (
    "signout",
    "reuse",
    "password_change",
    "session_revoked",
    "others_revoked",
    "user_disabled",
    "role_removed",
    "user_deleted",
)
BACKGROUND_TASKS = ("revocation_poll", "purge")

# Security events -> what they count. An event that revokes sessions says how many in
# its `revoked_sessions` field; without one it counts the default given here.
SIGNIN_EVENTS = {
    "signin": SigninResult.SUCCESS,
    "signin_failed": SigninResult.FAILURE,
    "signin_refused": SigninResult.DISABLED,  # (reason "disabled", the only one)
}
# The events of the account flows are named after their reason.
REVOKING_EVENTS: Mapping[str, tuple[str, int]] = {
    "signout": ("signout", 1),
    "refresh_reused": ("reuse", 1),
    "password_changed": ("password_change", 0),
    "user_deleted": ("user_deleted", 0),
    "session_revoked": ("session_revoked", 1),
    "others_revoked": ("others_revoked", 0),
    "user_disabled": ("user_disabled", 0),
    "role_removed": ("role_removed", 0),
}
SIGNUP_EVENT = "signup"


class Metrics:
    """The observer's interface, doing nothing: what runs with `metrics.enabled =
    false`, and what an AuthService built without metrics gets."""

    enabled = False

    def event(self, event: str, fields: Mapping[str, object]) -> None:
        """A security event was logged (see SIGNIN_EVENTS, REVOKING_EVENTS)."""

    def signin(self, result: SigninResult) -> None:
        """A sign-in answered with `result` (one without a security event)."""

    def refresh(self, outcome: RefreshOutcome | str) -> None:
        """A refresh request answered: the storage's outcome, or MISSING."""

    def sessions_revoked(self, reason: str, count: int = 1) -> None:
        """`count` sessions were revoked for `reason` (one of REVOKE_REASONS), by a
        flow that logs no event saying so."""

    def error_answer(self, request: web.BaseRequest, code: ErrorCode) -> None:
        """The middleware answered an error with this code (a 429 included)."""

    def purged(self, result: PurgeResult) -> None:
        """A purge pass deleted these rows."""

    def task_failed(self, task: str) -> None:
        """A background task's pass failed (one of BACKGROUND_TASKS)."""

    def socket_opened(self) -> None:
        """A WebSocket bound to a session was opened."""

    def socket_closed(self) -> None:
        """... and has ended."""

    def request(self, route: web.AbstractRoute, status: int, seconds: float) -> None:
        """A request to `route` was answered with `status` after `seconds`."""

    async def maintain(self) -> None:
        """The app's background task: periodic flushes where they are needed."""

    async def render(self) -> bytes:
        """The Prometheus text format of every family."""
        raise web.HTTPNotFound


NO_METRICS = Metrics()


class PrometheusMetrics(Metrics):
    """Counting into prometheus-client's metric objects, in this process's registry or,
    with PROMETHEUS_MULTIPROC_DIR set, in the shared files of every worker."""

    enabled = True

    def __init__(self, pending_hashes: Callable[[], int] = lambda: 0) -> None:
        """`pending_hashes`: the password checks waiting for or holding a hashing
        thread now, sampled at each flush."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, values

        self.directory = os.environ.get(MULTIPROC_ENV) or None
        if self.directory and not values.ValueClass._multiprocess:
            raise RuntimeError(
                f"{MULTIPROC_ENV} was set after prometheus_client was imported: "
                "its multiprocess mode is chosen at import"
            )
        # In multiprocess mode the objects write to files and the scrape reads every
        # worker's files; otherwise the scrape reads this registry.
        self.registry = None if self.directory else CollectorRegistry()
        self._pending_hashes = pending_hashes

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, registry=self.registry, multiprocess_mode="livesum")

        signins = counter(
            "auth_signins", "Sign-in attempts answered, by result.", ("result",)
        )
        self._signins = {r: signins.labels(r) for r in SigninResult}
        refreshes = counter(
            "auth_refreshes",
            "Refresh requests answered, by the refresh token's outcome.",
            ("outcome",),
        )
        self._refreshes = {o: refreshes.labels(o) for o in REFRESH_LABELS}
        revoked = counter(
            "auth_sessions_revoked", "Sessions revoked, by reason.", ("reason",)
        )
        self._revoked = {r: revoked.labels(r) for r in REVOKE_REASONS}
        self._rate_limited = counter(
            "auth_rate_limited",
            "Requests refused by a rate limit (429), by route template.",
            ("route",),
        )
        self._purged_tokens = counter(
            "auth_purged_tokens", "Refresh tokens deleted by the purge."
        )
        self._purged_sessions = counter(
            "auth_purged_sessions", "Expired sessions deleted by the purge."
        )
        self._signups = counter("auth_signups", "Accounts registered.")
        errors = counter(
            "auth_error_answers",
            "Error answers, by the contract's code (csrf_failed, unavailable, "
            "internal_error, token_invalid, ...).",
            ("code",),
        )
        self._errors = {code: errors.labels(code.value) for code in ErrorCode}
        failures = counter(
            "auth_background_failures",
            "Failed passes of background tasks (revocation_poll, purge).",
            ("task",),
        )
        self._failures = {task: failures.labels(task) for task in BACKGROUND_TASKS}
        self._sockets = gauge(
            "auth_websockets_open", "WebSockets open, each bound to a session."
        )
        self._hashes = gauge(
            "auth_password_checks_pending",
            "Password checks and hashes admitted to the hashing pool and not finished"
            " (the queue before sign-ins are refused with 429).",
        )
        self._durations = _histogram(self.registry)
        # route -> status -> per-bucket counts, then the sum of seconds, not flushed yet
        # (two lookups: no key tuple to build on every request)
        # Keyed by route object (None: every unmatched request), for speed.
        self._unflushed: dict[web.AbstractRoute | None, dict[int, list[float]]] = {}
        self._children: dict[tuple[web.AbstractRoute | None, int], Histogram] = {}

    # counters and gauges: written at once

    def event(self, event: str, fields: Mapping[str, object]) -> None:
        result = SIGNIN_EVENTS.get(event)
        if result is not None:
            self._signins[result].inc()
        revoking = REVOKING_EVENTS.get(event)
        if revoking is not None:
            reason, default = revoking
            count = fields.get("revoked_sessions", default)
            self.sessions_revoked(reason, count if isinstance(count, int) else default)
        if event == SIGNUP_EVENT:
            self._signups.inc()

    def signin(self, result: SigninResult) -> None:
        self._signins[result].inc()

    def refresh(self, outcome: RefreshOutcome | str) -> None:
        if isinstance(outcome, RefreshOutcome):
            outcome = REFRESH_OUTCOMES[outcome]
        self._refreshes[outcome].inc()

    def sessions_revoked(self, reason: str, count: int = 1) -> None:
        if count > 0:
            self._revoked[reason].inc(count)

    def error_answer(self, request: web.BaseRequest, code: ErrorCode) -> None:
        self._errors[code].inc()
        if code is ErrorCode.RATE_LIMITED:
            self._rate_limited.labels(route_label(request)).inc()

    def purged(self, result: PurgeResult) -> None:
        self._purged_tokens.inc(result.tokens)
        self._purged_sessions.inc(result.sessions)

    def task_failed(self, task: str) -> None:
        self._failures[task].inc()

    def socket_opened(self) -> None:
        self._sockets.inc()

    def socket_closed(self) -> None:
        self._sockets.dec()

    # request durations: counted in process, flushed

    def request(self, route: web.AbstractRoute, status: int, seconds: float) -> None:
        if route.resource is None:  # aiohttp makes a new route for each 404 and 405:
            route = None  # type: ignore[assignment]  # one key for all, not one each
        try:
            counts = self._unflushed[route][status]
        except KeyError:
            by_status = self._unflushed.setdefault(route, {})
            counts = by_status.setdefault(status, [0.0] * (len(BOUNDS) + 1))
        counts[bisect_left(BOUNDS, seconds)] += 1
        counts[-1] += seconds

    def flush(self) -> None:
        """Hand the request durations counted since the last flush to prometheus-client
        (in multiprocess mode: write them to this worker's file), and sample the
        gauges."""
        for route, by_status in self._unflushed.items():
            for status, counts in by_status.items():
                if any(counts):
                    _add_observations(self._child(route, status), counts)
                    counts[:] = [0.0] * len(counts)
        self._hashes.set(self._pending_hashes())

    def _child(self, route: web.AbstractRoute | None, status: int) -> Histogram:
        child = self._children.get((route, status))
        if child is None:
            child = self._durations.labels(route_label_of(route), str(status))
            self._children[route, status] = child
        return child

    async def maintain(self) -> None:
        """With several workers, flush every FLUSH_INTERVAL so that a scrape answered
        by another worker sees this one's requests; flush once more on the way out."""
        if self.directory is None:
            return  # a scrape reads this process's own objects, flushed first
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                self.flush()
        finally:
            self.flush()

    async def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        self.flush()
        registry = CollectorRegistry()
        if self.registry is None:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(registry, path=self.directory)
        else:
            registry.register(_WithoutCreated(self.registry))
        # Reading every worker's files is file I/O: not on the event loop.
        return await asyncio.to_thread(generate_latest, registry)


BOUNDS = (*DURATION_BUCKETS, float("inf"))


class _WithoutCreated:
    """A registry's families without their `_created` samples: multiprocess mode has
    none, so one process answers the same families as several, in half the text."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if s.name[-8:] != "_created"]
            yield family


def _histogram(registry: CollectorRegistry | None) -> Histogram:
    from prometheus_client import Histogram

    return Histogram(
        "auth_http_request_duration_seconds",
        "Time from routing to the response, by route template and status.",
        ("route", "status"),
        registry=registry,
        buckets=DURATION_BUCKETS,
    )


def _add_observations(child: Histogram, counts: list[float]) -> None:
    """What `child.observe(...)` does, for many observations bucketed beforehand:
    prometheus-client has no public call for it, so this uses the value objects every
    Histogram child holds (`_buckets`, `_sum`, in the pinned version; the metrics tests
    check the rendered buckets, sum and count)."""
    child._sum.inc(counts[-1])
    for bucket, count in zip(child._buckets, counts, strict=False):
        if count:
            bucket.inc(count)


def route_label(request: web.BaseRequest) -> str:
    """The matched route's path template, or UNMATCHED: a bounded set of values."""
    match_info = getattr(request, "match_info", None)
    return route_label_of(getattr(match_info, "route", None))


def route_label_of(route: web.AbstractRoute | None) -> str:
    resource = getattr(route, "resource", None)
    return UNMATCHED if resource is None else resource.canonical

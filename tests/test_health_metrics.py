"""`GET /api/health` and `GET /metrics` in one process: health with the storage up,
hung and gone; every metric family counted exactly after a known sequence of requests,
with API.md's label values; `metrics.enabled = false`. (Several workers:
tests/test_metrics_workers.py; PostgreSQL going away: tests/test_storage_outage.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import EMBEDDED_GROUPS, Auth, clock, keys
from server.metrics import DURATION_BUCKETS, PrometheusMetrics
from server.purge import purge_once
from storage import StorageUnavailable
from tests.conftest import Api, MakeApi, expect_error, make_admin_token, make_settings
from tests.metrics_kit import Scrape

NEW_PASSWORD = "a brand new passphrase 42"
WRONG = "not the password at all"


async def scrape(api: Api) -> Scrape:
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    assert response.headers["Cache-Control"] == "no-store"
    return Scrape.parse(await response.text())


async def test_health_answers_ok_while_the_storage_answers(api: Api) -> None:
    response = await api.get("/api/health")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    assert response.headers["Cache-Control"] == "no-store"


async def test_health_answers_503_while_the_storage_hangs(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api()
    storage = api.app[keys.AUTH].storage
    monkeypatch.setattr("server.health.HEALTH_TIMEOUT", 0.05)
    answer = asyncio.Event()
    real_ping = storage.ping

    async def hanging_ping() -> None:
        await answer.wait()
        await real_ping()

    monkeypatch.setattr(storage, "ping", hanging_ping)
    with caplog.at_level(logging.WARNING, logger="auth.health"):
        for _ in range(3):
            response = await api.get("/api/health")
            assert (response.status, await response.json()) == (
                503,
                {
                    "status": "unavailable",
                    "message": "The storage did not answer within 0.05 seconds.",
                },
            )
            assert response.headers["Cache-Control"] == "no-store"
        answer.set()
        response = await api.get("/api/health")
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    # One line when it went bad and one when it came back, not one per probe.
    assert [r.getMessage() for r in caplog.records] == [
        "health: unavailable: The storage did not answer within 0.05 seconds."
        " (timeout)",
        "health: the storage answers again",
    ]


async def test_health_answers_503_while_the_storage_fails(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await make_api()

    async def failing_ping() -> None:
        raise StorageUnavailable("PostgreSQL: connection refused by db.internal:5432")

    monkeypatch.setattr(api.app[keys.AUTH].storage, "ping", failing_ping)
    response = await api.get("/api/health")
    body = await response.json()
    assert (response.status, body) == (
        503,
        {"status": "unavailable", "message": "The storage is unavailable."},
    )


async def test_metrics_off_is_404_like_any_unknown_route(make_api: MakeApi) -> None:
    api = await make_api(metrics={"enabled": False})
    await expect_error(
        await api.get("/metrics"), 404, "Route /metrics not found", "not_found"
    )
    response = await api.get("/api/health")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    assert api.app[keys.AUTH].metrics.enabled is False
    document = await (await api.get("/api/openapi.json")).json()
    assert "/metrics" not in document["paths"] and "/api/health" in document["paths"]


async def test_every_family_starts_at_zero_with_every_label_value(api: Api) -> None:
    metrics = await scrape(api)
    assert metrics.values("auth_signins_total", "result") == {
        "success": 0,
        "failure": 0,
        "disabled": 0,
        "rate_limited": 0,
    }
    assert metrics.values("auth_refreshes_total", "outcome") == dict.fromkeys(
        (
            "rotated",
            "replayed",
            "unchanged",
            "missing",
            "unknown",
            "expired",
            "reused",
            "revoked",
        ),
        0,
    )
    assert metrics.values("auth_sessions_revoked_total", "reason") == dict.fromkeys(
        (
            "signout",
            "reuse",
            "password_change",
            "session_revoked",
            "others_revoked",
            "user_disabled",
            "role_removed",
            "user_deleted",
        ),
        0,
    )
    assert metrics.value("auth_purged_tokens_total") == 0
    assert metrics.types["auth_rate_limited"] == "counter"
    assert metrics.types["auth_http_request_duration_seconds"] == "histogram"
    assert metrics.value("auth_websockets_open") == 0
    assert metrics.value("auth_password_checks_pending") == 0


async def test_a_known_sequence_is_counted_exactly(make_api: MakeApi) -> None:
    """Sign-ins that pass, fail and are rate limited; refreshes of every outcome;
    sign-out (twice: counted once), reuse (two stolen tokens: one revocation), a
    password change, a purge; the protected route and unknown paths."""
    api = await make_api(ratelimit={"enabled": True, "signin_pair_limit": 2})
    assert (await api.signup("alice")).status == 201
    assert (await api.signup("bob")).status == 201

    a1, a2, a3, _a4 = [await (await api.signin("alice")).json() for _ in range(4)]
    assert [(await api.signin("bob", WRONG)).status for _ in range(3)] == [
        401,
        401,
        429,
    ]
    assert (await api.signin("nobody")).status == 401

    rotated = await (await api.refresh(a1["refreshToken"])).json()
    assert (await api.refresh(a1["refreshToken"])).status == 200  # replayed
    await expect_error(await api.refresh(None), 403, None, "refresh_missing")
    await expect_error(await api.refresh("garbage"), 403, None, "refresh_unknown")
    assert (await api.refresh(rotated["refreshToken"])).status == 200

    stolen = a2["refreshToken"]  # rotated twice by its owner, then replayed late
    second = await (await api.refresh(stolen)).json()
    third = await (await api.refresh(second["refreshToken"])).json()
    clock.advance(11)  # past tokens.reuse_interval
    await expect_error(await api.refresh(stolen), 403, None, "refresh_reused")
    await expect_error(
        await api.refresh(third["refreshToken"]), 403, None, "refresh_reused"
    )

    assert (await api.signout(a3["refreshToken"])).status == 200
    assert (await api.signout(a3["refreshToken"])).status == 200  # already out
    await expect_error(
        await api.refresh(a3["refreshToken"]), 403, None, "refresh_revoked"
    )

    change = {"currentPassword": "correct horse battery staple"}
    response = await api.client.post(
        "/api/auth/password",
        json={**change, "newPassword": NEW_PASSWORD},
        headers={"x-access-token": a1["accessToken"]},
    )
    assert response.status == 200  # revokes a4, keeps a1's session
    a5 = await (await api.signin("alice", NEW_PASSWORD)).json()

    for _ in range(5):
        assert (await api.get("/api/test/user", a1["accessToken"])).status == 200
    for path in ("/nowhere", "/api/users/../../etc"):
        assert (await api.get(path)).status == 404

    auth = api.app[keys.AUTH]
    clock.advance(auth.settings.tokens.refresh_ttl + 1)
    await expect_error(
        await api.refresh(a5["refreshToken"]), 403, None, "refresh_expired"
    )
    purged = await purge_once(auth.storage, 3, metrics=auth.metrics)

    metrics = await scrape(api)
    assert metrics.value("auth_signups_total") == 2
    assert metrics.values("auth_signins_total", "result") == {
        "success": 5,
        "failure": 3,
        "disabled": 0,
        "rate_limited": 1,
    }
    assert metrics.values("auth_refreshes_total", "outcome") == {
        "rotated": 4,
        "replayed": 1,
        "unchanged": 0,
        "missing": 1,
        "unknown": 1,
        "expired": 1,
        "reused": 2,
        "revoked": 1,
    }
    revoked = metrics.values("auth_sessions_revoked_total", "reason")
    assert {k: v for k, v in revoked.items() if v} == {
        "signout": 1,
        "reuse": 1,
        "password_change": 1,
    }
    assert metrics.values("auth_rate_limited_total", "route") == {"/api/auth/signin": 1}
    # a1, a2 (3 tokens each), a3 and a4 (1 each); a5 went at its expired refresh
    assert (purged.sessions, purged.tokens) == (4, 8)
    assert metrics.value("auth_purged_tokens_total") == 8
    assert metrics.value("auth_purged_sessions_total") == 4
    errors = metrics.values("auth_error_answers_total", "code")
    assert {k: v for k, v in errors.items() if v} == {
        "invalid_credentials": 3,
        "rate_limited": 1,
        "refresh_missing": 1,
        "refresh_unknown": 1,
        "refresh_reused": 2,
        "refresh_revoked": 1,
        "refresh_expired": 1,
        "not_found": 2,
    }
    assert {
        (route, status): metrics.requests(route, status)
        for route, status in [
            ("/api/auth/signup", 201),
            ("/api/auth/signin", 200),
            ("/api/auth/signin", 401),
            ("/api/auth/signin", 429),
            ("/api/auth/refreshtoken", 200),
            ("/api/auth/refreshtoken", 403),
            ("/api/auth/signout", 200),
            ("/api/auth/password", 200),
            ("/api/test/user", 200),
            ("unmatched", 404),
        ]
    } == {
        ("/api/auth/signup", 201): 2,
        ("/api/auth/signin", 200): 5,
        ("/api/auth/signin", 401): 3,
        ("/api/auth/signin", 429): 1,
        ("/api/auth/refreshtoken", 200): 5,
        ("/api/auth/refreshtoken", 403): 6,
        ("/api/auth/signout", 200): 2,
        ("/api/auth/password", 200): 1,
        ("/api/test/user", 200): 5,
        ("unmatched", 404): 2,
    }
    routes = {
        dict(labels)["route"]
        for name, labels in metrics.samples
        if name == "auth_http_request_duration_seconds_count"
    }
    assert "/nowhere" not in routes and "unmatched" in routes


async def test_the_histogram_has_cumulative_buckets_sum_and_count() -> None:
    """The bulk flush renders what prometheus-client's own `observe` would."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    route = web.Application().router.add_get("/api/users/{id}", handler)
    ours, reference = PrometheusMetrics(), PrometheusMetrics()
    durations = [0.0002, 0.0005, 0.0007, 0.003, 0.2, 4.0, 12.0]
    for seconds in durations:
        ours.request(route, 200, seconds)
    child = reference._durations.labels("/api/users/{id}", "200")
    for seconds in durations:
        child.observe(seconds)
    rendered, expected = [
        Scrape.parse((await metrics.render()).decode()) for metrics in (ours, reference)
    ]
    name = "auth_http_request_duration_seconds"
    assert rendered.samples == expected.samples
    labels = {"route": "/api/users/{id}", "status": "200"}
    assert rendered.value(f"{name}_count", **labels) == 7
    assert rendered.value(f"{name}_bucket", le="0.0005", **labels) == 2
    assert rendered.value(f"{name}_bucket", le="10.0", **labels) == 6
    assert rendered.value(f"{name}_sum", **labels) == pytest.approx(sum(durations))
    assert len(DURATION_BUCKETS) == 14
    # Flushed once: a second render adds nothing.
    again = Scrape.parse((await ours.render()).decode())
    assert again.value(f"{name}_count", **labels) == 7


async def test_the_background_purge_is_counted(make_api: MakeApi) -> None:
    api = await make_api(purge={"interval": 0.05})
    assert (await api.signup("carol")).status == 201
    assert (await api.signin("carol")).status == 200
    clock.advance(api.app[keys.AUTH].settings.tokens.refresh_ttl + 1)
    for _ in range(200):  # the next pass, within a few intervals
        metrics = await scrape(api)
        if metrics.value("auth_purged_tokens_total"):
            break
        await asyncio.sleep(0.02)
    assert metrics.value("auth_purged_tokens_total") == 1
    assert metrics.value("auth_purged_sessions_total") == 1


async def test_failed_background_passes_are_counted(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await make_api(tokens={"revocation_poll": 0.1})

    async def failing(cursor: Any, now: int) -> Any:
        raise StorageUnavailable("database gone")

    monkeypatch.setattr(api.app[keys.AUTH].storage, "revocations_since", failing)
    for _ in range(100):
        metrics = await scrape(api)
        failures = metrics.values("auth_background_failures_total", "task")
        if failures["revocation_poll"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert failures["revocation_poll"] >= 2 and failures["purge"] == 0


async def test_open_websockets_are_a_gauge(api: Api) -> None:
    signed_in = await api.user("dave")
    socket = await api.client.ws_connect(
        "/api/ws", headers={"x-access-token": signed_in["accessToken"]}
    )
    assert (await socket.receive_json())["type"] == "hello"
    assert (await scrape(api)).value("auth_websockets_open") == 1
    await socket.close()
    for _ in range(100):
        if (await scrape(api)).value("auth_websockets_open") == 0:
            break
        await asyncio.sleep(0.02)
    assert (await scrape(api)).value("auth_websockets_open") == 0


async def test_pending_password_checks_are_sampled_at_the_scrape() -> None:
    pending = [3]
    metrics = PrometheusMetrics(lambda: pending[0])
    assert (
        Scrape.parse((await metrics.render()).decode()).value(
            "auth_password_checks_pending"
        )
        == 3
    )
    pending[0] = 0
    assert (
        Scrape.parse((await metrics.render()).decode()).value(
            "auth_password_checks_pending"
        )
        == 0
    )


async def test_two_apps_in_one_process_count_apart(make_api: MakeApi) -> None:
    first, second = await make_api(), await make_api()
    assert (await first.signin("nobody")).status == 401
    assert (await scrape(first)).value("auth_signins_total", result="failure") == 1
    assert (await scrape(second)).value("auth_signins_total", result="failure") == 0


async def test_a_host_app_opts_into_health_and_metrics(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    default, opted = web.Application(), web.Application()
    Auth(make_settings(tmp_path / "a")).setup(default)
    Auth(make_settings(tmp_path / "b")).setup(
        opted, groups=EMBEDDED_GROUPS | {"health", "metrics"}
    )
    plain, ops = await aiohttp_client(default), await aiohttp_client(opted)
    assert (await plain.get("/api/health")).status == 404
    assert (await plain.get("/metrics")).status == 404
    response = await ops.get("/api/health")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    response = await ops.get("/metrics")
    assert response.status == 200 and "auth_signins_total" in await response.text()


async def test_account_flows_count_their_revocations(make_api: MakeApi) -> None:
    """A session revoked by its user, the others revoked, a role taken away, a user
    disabled (whose right password then counts as `disabled`) and a user deleted."""
    api = await make_api()
    admin = {"x-access-token": await make_admin_token(api.app)}
    erin = [await api.user("erin")] + [
        await (await api.signin("erin")).json() for _ in range(3)
    ]
    own = {"x-access-token": erin[0]["accessToken"]}
    listed = await (await api.client.get("/api/auth/sessions", headers=own)).json()
    other = next(s["id"] for s in listed["sessions"] if not s["current"])
    response = await api.client.delete(f"/api/auth/sessions/{other}", headers=own)
    assert response.status == 200
    response = await api.client.delete("/api/auth/sessions", headers=own)
    assert (await response.json())["revoked"] == 2

    frank = await api.user("frank", roles=["moderator"])
    await api.signin("frank")
    patch = {"roles": ["user"]}
    response = await api.client.patch(
        f"/api/users/{frank['id']}", json=patch, headers=admin
    )
    assert response.status == 200  # both of frank's sessions
    response = await api.client.patch(
        f"/api/users/{erin[0]['id']}", json={"disabled": True}, headers=admin
    )
    assert response.status == 200  # erin's last session
    await expect_error(await api.signin("erin"), 403, None, "account_disabled")
    gina = await api.user("gina")
    response = await api.client.delete(f"/api/users/{gina['id']}", headers=admin)
    assert response.status == 200

    metrics = await scrape(api)
    revoked = metrics.values("auth_sessions_revoked_total", "reason")
    assert {k: v for k, v in revoked.items() if v} == {
        "session_revoked": 1,
        "others_revoked": 2,
        "role_removed": 2,
        "user_disabled": 1,
        "user_deleted": 1,
    }
    assert metrics.value("auth_signins_total", result="disabled") == 1


@pytest.mark.parametrize("backend", ["memory"])
async def test_unmatched_paths_grow_nothing(api: Api) -> None:
    """aiohttp makes a new route object for every 404 and 405: they share one entry, so
    a client probing random paths cannot grow the server's memory."""
    metrics = api.app[keys.AUTH].metrics
    for n in range(300):
        await api.get(f"/no/such/path/{n}")
        await api.client.post("/api/test/all")  # 405
    assert len(metrics._unflushed) == 1  # the unmatched key; nothing else was requested
    counted = await scrape(api)
    label = {"route": "unmatched", "status": "404"}
    assert counted.value("auth_http_request_duration_seconds_count", **label) == 300

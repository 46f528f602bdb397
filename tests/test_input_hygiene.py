"""Input hygiene: JSON nesting refused before parsing, and one canonical text per client
address (IPv4-mapped IPv6 as IPv4, IPv6 compressed, rate-limit keys per /64)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server import create_app
from server.bodies import MAX_DEPTH, too_deep
from server.clientaddr import (
    canonical_address,
    client_address,
    parse_networks,
    rate_limit_key,
)
from tests.conftest import PASSWORD, Api, expect_error, make_settings

memory_only = pytest.mark.parametrize("backend", ["memory"])
TOO_DEEP = "Request body is nested more than 32 levels deep"


def signup_nested(depth: int, opener: str = "[") -> bytes:
    """A valid sign-up body whose extra field makes the whole body `depth` deep (the
    top-level object counts as 1)."""
    inner = {"[": "[", "{": '{"x": '}[opener] * (depth - 1)
    closer = {"[": "]", "{": "}"}[opener] * (depth - 1)
    body = (
        '{"username": "deep", "email": "deep@example.com", '
        f'"password": "{PASSWORD}", "extra": {inner}1{closer}}}'
    )
    assert json.loads(body)  # well-formed: only the depth can be refused
    return body.encode()


@memory_only
@pytest.mark.parametrize("opener", ["[", "{"])
async def test_depth_32_is_accepted(api: Api, opener: str) -> None:
    response = await api.client.post(
        "/api/auth/signup",
        data=signup_nested(MAX_DEPTH, opener),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 201, await response.text()


@memory_only
@pytest.mark.parametrize("depth", [33, 200])
@pytest.mark.parametrize("opener", ["[", "{"])
async def test_deeper_bodies_are_400_and_create_nothing(
    api: Api, depth: int, opener: str
) -> None:
    response = await api.client.post(
        "/api/auth/signup",
        data=signup_nested(depth, opener),
        headers={"Content-Type": "application/json"},
    )
    await expect_error(response, 400, TOO_DEEP, "validation_error")
    signin = await api.signin("deep")
    assert signin.status == 401


def test_the_depth_scan_ignores_brackets_in_strings() -> None:
    assert MAX_DEPTH == 32
    assert too_deep(b"[" * 33 + b"]" * 33)
    assert not too_deep(b"[" * 32 + b"]" * 32)
    assert not too_deep(b'["' + b"[" * 100 + b'"]')
    assert not too_deep(b'{"k": "' + b"{" * 100 + b'"}')
    assert not too_deep(b'["\\"' + b"[" * 100 + b'"]')  # an escaped quote inside
    assert too_deep(b'["\\\\"' + b",[" * 33 + b"]" * 33 + b"]")  # an escaped backslash
    assert not too_deep(b"[]" * 5000)  # many, but shallow
    assert not too_deep(b'"' + b"[" * 100)  # a string that never ends


def test_addresses_have_one_canonical_text() -> None:
    assert canonical_address("2001:DB8::1") == "2001:db8::1"
    assert canonical_address("2001:0db8:0000::0001") == "2001:db8::1"
    assert canonical_address("::ffff:1.1.1.1") == "1.1.1.1"
    assert canonical_address("::FFFF:0101:0101") == "1.1.1.1"
    assert canonical_address("1.1.1.1") == "1.1.1.1"
    assert canonical_address("unknown") == "unknown"


def test_rate_limit_keys_group_ipv6_per_prefix() -> None:
    assert rate_limit_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert rate_limit_key("2001:DB8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert rate_limit_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert rate_limit_key("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert rate_limit_key("2001:0db8::0001", 128) == "2001:db8::1"
    assert rate_limit_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert rate_limit_key("203.0.113.9") == "203.0.113.9"
    assert rate_limit_key("unknown") == "unknown"


def test_mapped_networks_in_trusted_proxies_are_ipv4() -> None:
    assert [str(n) for n in parse_networks(["::ffff:10.0.0.0/104", " ::1 "])] == [
        "10.0.0.0/8",
        "::1/128",
    ]


def request_from(peer: str, forwarded: str | None = None) -> web.Request:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return make_mocked_request("GET", "/", headers=headers).clone(remote=peer)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("::ffff:10.0.0.1", "203.0.113.7", "203.0.113.7"),  # mapped peer is trusted
        ("10.0.0.1", "2001:DB8::0001", "2001:db8::1"),  # the hop made canonical
        ("10.0.0.1", "::ffff:198.51.100.2", "198.51.100.2"),
        ("10.0.0.1", "198.51.100.2, ::ffff:10.9.9.9", "198.51.100.2"),  # trusted hop
        ("10.0.0.1", "198.51.100.2:5678", "198.51.100.2"),  # a port added by a proxy
        ("10.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.1", "garbage", "10.0.0.1"),
        ("::ffff:192.0.2.1", "203.0.113.7", "192.0.2.1"),  # untrusted: header ignored
        ("2001:0DB8::0001", None, "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    assert client_address(request_from(peer, forwarded), trusted) == expected


@pytest.fixture
async def dual_stack_url(tmp_path: Path) -> AsyncIterator[str]:
    """The real app on a dual-stack IPv6 socket, reached over IPv4: its peers are
    IPv4-mapped (::ffff:127.0.0.1), as behind many load balancers."""
    try:
        sock = socket.socket(socket.AF_INET6)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
    except OSError as exc:
        pytest.skip(f"no dual-stack IPv6 socket on this machine: {exc}")
    settings = make_settings(tmp_path, server={"trusted_proxies": ("127.0.0.0/8",)})
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def test_a_mapped_peer_matches_an_ipv4_trusted_proxy(
    dual_stack_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auth.security")
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{dual_stack_url}/api/auth/signin",
            json={"username": "nobody", "password": PASSWORD},
            headers={"X-Forwarded-For": "2001:0DB8:0000::0042"},
        )
        assert response.status == 401
    (line,) = [r.getMessage() for r in caplog.records if r.name == "auth.security"]
    assert json.loads(line)["ip"] == "2001:db8::42"

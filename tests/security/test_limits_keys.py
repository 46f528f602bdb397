"""What limits count (issues 16.6 and 16.9).

Unlinkable: sign-in limits count the login name as typed (canonicalised), never the
account it names, so a probe of failures by username and by email gets the same answers
whether or not both name one account, and whether or not either exists.

Canonical: every per-address limit counts `Caller.limit_key`: one key for every
spelling of an address, IPv4-mapped IPv6 as IPv4, IPv6 per /64 (`ipv6_prefix`)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PASSWORD, Api, MakeApi
from tests.security.ratelimit_kit import (
    PROXY,
    WRONG,
    expect_invalid_credentials,
    expect_limited,
    limits,
    signin,
)

# Keys are made before any storage call, and every backend keeps counters the same
# way (test_rate_limits.py, test_limits_exact.py): one backend shows what is counted.
pytestmark = pytest.mark.parametrize("backend", ["memory"])
LINKED = ("alice", "alice@example.com")  # one account
UNLINKED = ("bob", "carol@example.com")  # two accounts: bob, carol
UNKNOWN = ("nobody", "nobody@example.com")  # no account
SAME_64 = ("2001:DB8::1", "2001:0db8:0000::0001", "2001:db8::ffff")


async def probe(api: Api, username: str, email: str, spread: bool) -> list[Any]:
    """Ten failures by username, ten by email, then three more by username: each
    answer's status, body (a 429's seconds left aside) and whether it says when to
    retry. `spread`: each attempt
    from its own address (only the per-name limit from unknown addresses applies)."""
    answers = []
    logins = [{"username": username}] * 10 + [{"email": email}] * 10
    for n, login in enumerate(logins + [{"username": username}] * 3):
        address = f"198.51.{100 + n // 200}.{n % 200 + 1}" if spread else "192.0.2.1"
        response = await signin(api, password=WRONG, address=address, **login)
        body = await response.json()
        if response.status == 429:  # its message says the seconds left: time-bound
            body["message"] = "(seconds)"
        answers.append((response.status, body, "Retry-After" in response.headers))
    return answers


@pytest.mark.parametrize(
    ("ratelimit", "spread"),
    [
        ({"signin_pair_limit": 12}, False),
        ({"signin_account_limit": 12}, True),
    ],
    ids=["per-name-and-address", "per-name-from-unknown-addresses"],
)
async def test_a_username_and_an_email_are_never_linked(
    make_api: MakeApi, ratelimit: dict[str, int], spread: bool
) -> None:
    """A limit of 12: the 13th failure by username is refused in every case, and not
    one answer before it differs (had the limit counted the account, the linked probe
    would be refused at its 13th attempt, the 3rd by email)."""
    api = await make_api(server=PROXY, ratelimit=limits(**ratelimit))
    for name in ("alice", "bob", "carol"):  # each with name@example.com
        assert (await api.signup(name)).status == 201
    patterns = [await probe(api, *case, spread) for case in (LINKED, UNLINKED, UNKNOWN)]
    invalid = (
        401,
        {"message": "Invalid username or password.", "code": "invalid_credentials"},
        False,
    )
    assert patterns[0][:22] == [invalid] * 22
    assert patterns[0][22][0] == 429 and patterns[0][22][2]
    assert patterns[0] == patterns[1] == patterns[2]


async def test_spellings_of_one_name_share_its_count(make_api: MakeApi) -> None:
    """The name is counted in its canonical form: case, full-width and look-alike
    spellings that find the same account get no fresh budget."""
    api = await make_api(ratelimit=limits(signin_pair_limit=3))
    await api.signup("alice", email="alice@example.com")
    await expect_invalid_credentials(await signin(api, "alice", WRONG))
    await expect_invalid_credentials(await signin(api, "ALICE", WRONG))
    await expect_invalid_credentials(await signin(api, "\uff41lice", WRONG))
    await expect_limited(await signin(api, "Alice"), 900)
    await expect_invalid_credentials(
        await signin(api, password=WRONG, email="Alice@Example.COM")
    )
    await expect_invalid_credentials(
        await signin(api, password=WRONG, email="alice@EXAMPLE.com")
    )
    await expect_invalid_credentials(
        await signin(api, password=WRONG, email="alice@\uff45xample.com")
    )
    await expect_limited(await signin(api, email="alice@example.com"), 900)


async def test_ipv6_spellings_and_one_64_share_a_counter(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signin_ip_limit=3))
    await api.signup("alice")
    for address in SAME_64:
        await expect_invalid_credentials(await signin(api, "alice", WRONG, address))
    await expect_limited(await signin(api, "alice", address="2001:db8::1:2:3:4"), 900)
    assert (await signin(api, "alice", address="2001:db8:0:1::1")).status == 200


async def test_mapped_ipv4_is_counted_as_ipv4(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signin_ip_limit=2))
    await api.signup("alice")
    await expect_invalid_credentials(
        await signin(api, "alice", WRONG, "::ffff:1.1.1.1")
    )
    await expect_invalid_credentials(await signin(api, "alice", WRONG, "1.1.1.1"))
    await expect_limited(await signin(api, "alice", address="::FFFF:1.1.1.1"), 900)
    await expect_limited(await signin(api, "alice", address="1.1.1.1"), 900)
    assert (await signin(api, "alice", address="1.1.1.2")).status == 200


async def test_ipv6_prefix_128_counts_each_address(make_api: MakeApi) -> None:
    api = await make_api(
        server=PROXY, ratelimit=limits(signin_ip_limit=1, ipv6_prefix=128)
    )
    await api.signup("alice")
    await expect_invalid_credentials(await signin(api, "alice", WRONG, "2001:DB8::1"))
    await expect_limited(await signin(api, "alice", address="2001:db8:0::1"), 900)
    assert (await signin(api, "alice", address="2001:db8::2")).status == 200


@pytest.mark.parametrize("route", ["refreshtoken", "signout", "signup"])
async def test_every_per_address_limit_counts_the_canonical_key(
    make_api: MakeApi, route: str
) -> None:
    window = {"refreshtoken": 60, "signout": 60, "signup": 3600}[route]
    setting = {
        "refreshtoken": "refresh_ip_limit",
        "signout": "signout_ip_limit",
        "signup": "signup_ip_limit",
    }[route]
    api = await make_api(server=PROXY, ratelimit=limits(**{setting: 3}))

    async def call(n: int, address: str) -> Any:
        body: dict[str, Any] = {"refreshToken": f"never-issued-{n}"}
        if route == "signup":
            body = {
                "username": f"user{n}",
                "email": f"user{n}@example.com",
                "password": PASSWORD,
            }
        return await api.client.post(
            f"/api/auth/{route}", json=body, headers={"X-Forwarded-For": address}
        )

    for n, address in enumerate(SAME_64):
        assert (await call(n, address)).status != 429
    await expect_limited(await call(3, "2001:db8::abcd"), window)
    assert (await call(4, "2001:db8:0:1::1")).status != 429
    for n, address in enumerate(("::ffff:1.1.1.1", "1.1.1.1", "::ffff:101:101")):
        assert (await call(5 + n, address)).status != 429
    await expect_limited(await call(8, "1.1.1.1"), window)

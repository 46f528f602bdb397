"""Phase 7: the protected route when every request presents an access token the server
has never seen, so that every request pays a whole verification (signature, every claim)
whatever the server caches. Many users, each signing in or refreshing now and then, look
like this to a server; one token repeated (phase 1) is the best case.

The tokens are signed by the bench with the server's own key (the key file in the data
folder the server made) through the server's own issuing code, for the bench user's
session: each is exactly what a sign-in or refresh would hand out (its own `jti`), without
the hours that many bcrypt sign-ins would take.
"""

from __future__ import annotations

import math
from pathlib import Path

import jwt

from server.settings import load_settings
from server.signing_keys import load_key_ring
from server.tokens import AccessTokens
from storage import User

from . import client, specs
from .load import LoadResult, LoadSpec
from .report import Figure
from .runner import Bench
from .servers import Server

HEADROOM = 1.2  # tokens minted beyond what the bare app could answer in the time


def protected_uncached(bench: Bench, server: Server, signed_in: dict) -> None:
    config = bench.config
    connections = config.connections.throughput
    minter = Minter(server.env, signed_in)
    minter.check(server)
    rounds, repeated = [], 0
    for number in range(config.throughput_rounds):
        reference = specs.bare_reference(bench, connections)
        result = _measure_round(bench, server, minter, reference, number)
        repeated += result.details.get("repeated", 0)
        rounds.append((reference, result))
    reference, result, ratio = specs.median_round(rounds)
    target, passed = specs.at_least(ratio, 0.5)
    every = (
        "each token presented once"
        if not repeated
        else f"{repeated:,} requests re-presented a token (too few minted)"
    )
    bench.figure(
        Figure(
            7,
            "Protected route req/s vs bare aiohttp, uncached (a new token every request)",
            f"{result.rps:,.0f} req/s ({specs.ms(result)}); {every}",
            f"{reference.rps:,.0f} req/s ({specs.ms(reference)})",
            ratio,
            target,
            passed and not repeated,
        )
    )
    bench.results.series["uncached"] = {
        "bare": specs.point(reference),
        "auth": specs.point(result),
        "tokens": minter.minted,
        "repeated": repeated,
    }


def _measure_round(
    bench: Bench, server: Server, minter: Minter, reference: LoadResult, number: int
) -> LoadResult:
    """One round: tokens never presented before, as many as the route could take."""
    config = bench.config
    connections = config.connections.throughput

    # The route cannot answer faster than the bare app: that many tokens per second
    # (capped) is enough for each request to present one never presented before; whole
    # seconds, as wrk runs.
    def enough(seconds: float) -> int:
        wanted = math.ceil(reference.rps * math.ceil(seconds) * HEADROOM) + connections
        return max(connections, min(config.uncached_token_cap, wanted))

    measured_file = minter.write(
        bench.workdir / f"access-measured-{number}.txt", enough(config.duration)
    )
    if config.warmup > 0:
        warm_file = minter.write(
            bench.workdir / f"access-warm-{number}.txt", enough(config.warmup)
        )
        bench.start(_spec(server, warm_file, config.warmup, connections)).result()
    return bench.measure(
        _spec(server, measured_file, config.duration, connections), server
    )


def _spec(server: Server, tokens: Path, duration: float, connections: int) -> LoadSpec:
    return LoadSpec(
        "GET /api/test/user, a new access token every request",
        server.url,
        specs.USER_PATH,
        duration,
        connections,
        access_tokens=tokens,
    )


class Minter:
    """Access tokens of the signed-in bench user's session, signed as the server signs."""

    def __init__(self, env: dict[str, str], signed_in: dict) -> None:
        settings = load_settings(environ=env)
        claims = jwt.decode(
            signed_in["accessToken"], options={"verify_signature": False}
        )
        self.user = User(
            claims["sub"],
            signed_in["username"],
            signed_in["email"],
            "",
            tuple(claims["roles"]),
            0,
        )
        self.session_id = claims["sid"]
        self.tokens = AccessTokens(settings.tokens, load_key_ring(settings))
        self.minted = 0

    def write(self, path: Path, count: int) -> Path:
        with path.open("w") as out:
            for _ in range(count):
                out.write(self.tokens.issue(self.user, self.session_id) + "\n")
        self.minted += count
        return path

    def check(self, server: Server) -> None:
        """A minted token must be accepted, or every figure would be of 401s (this one
        is in no file: the measured tokens stay unseen)."""
        token = self.tokens.issue(self.user, self.session_id)
        status = client.get_status(server.port, specs.USER_PATH, token)
        if status != 200:
            raise RuntimeError(f"a minted access token was answered {status}, not 200")

"""How big and how long: one frozen config per run, from a preset (full, quick, smoke)
and the command line's overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


@dataclass(frozen=True)
class Connections:
    """Closed-loop connections per kind of load. Throughput loads use enough to keep the
    server busy; latency probes use few, so that queueing in the probe itself stays small."""

    throughput: int = 16
    refresh: int = 8
    probe: int = 4
    purge_probe: int = 2  # per route: the purge's effect, not queueing, should show
    signin_per_hash_thread: int = 4
    legit: int = 2  # phase 10: the valid refreshes, "a few connections"
    flood: int = 8  # phase 10: the junk refreshes and sign-outs
    long_chains: int = 4  # phase 11: one connection's worth of chains each


@dataclass(frozen=True)
class BenchConfig:
    mode: str = "full"
    duration: float = 5.0  # seconds per measurement
    warmup: float = 1.0  # seconds of unmeasured load before a throughput measurement
    bcrypt_rounds: int = 10
    generator: str = "auto"  # auto | wrk | python
    python_processes: int = field(default_factory=lambda: os.cpu_count() or 2)
    postgres_dsn: str = ""
    postgres_only: bool = False  # phases 4, 9-11 skip SQLite
    refresh_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    token_list_cap: int = 50_000  # fresh tokens handed to the generator per measurement
    purge_expired: int = 1_000_000
    purge_live: int = 10_000
    purge_watch: float = 120.0  # most seconds phase 5 watches a purge (then: its rate)
    server_purge_interval: float = 2.0  # phase 5's in-server purge starts within this
    worker_counts: tuple[int, ...] = (1, 2)
    # Phases 1-3 and 7: passwords.hash_workers of the server; "cores" (os.cpu_count(),
    # what the all-cores bound assumes), "server" (its own default) or a number.
    hash_workers: str = "cores"
    uncached_token_cap: int = 300_000  # phase 7: most access tokens minted
    # Phases 1 and 7: rounds of (bare app, then the route), the figure being the round
    # of the median ratio: a shared machine's noise moves single rounds by 20 %.
    throughput_rounds: int = 3
    limits_rounds: int = 2  # phase 8: limits off, on, off, on, ...
    revocation_samples: int = 50  # phase 9
    revocation_probe_ms: float = 5.0  # phase 9: instance B asked this often
    revocation_timeout: float = 5.0  # phase 9: a sample not revoked by then is a miss
    revocation_poll: float | None = (
        None  # phase 9: tokens.revocation_poll; None = default
    )
    legit_addresses: int = 1024  # phase 10: X-Forwarded-For pool of the valid refreshes
    flood_addresses: int = 65_536  # phase 10: X-Forwarded-For pool of the flood
    flood_ramp: float = 0.5  # phase 10: seconds of flood before the measurement
    long_rotations: int = 100_000  # phase 11: retired tokens of each long session
    connections: Connections = field(default_factory=Connections)
    phases: tuple[int, ...] = PHASES
    out_dir: Path = RESULTS
    profile_dir: Path | None = None


PRESETS: dict[str, dict] = {
    "full": {},
    "quick": {
        "duration": 1.0,
        "warmup": 0.0,
        "refresh_sizes": (1_000, 2_000, 5_000),
        "purge_expired": 20_000,
        "purge_live": 1_000,
        "purge_watch": 10.0,
        "uncached_token_cap": 50_000,
        "throughput_rounds": 1,
        "limits_rounds": 1,
        "revocation_samples": 10,
        "long_rotations": 10_000,
    },
    # The plumbing only, for the test suite: no figure of this mode means anything.
    "smoke": {
        "duration": 0.2,
        "warmup": 0.0,
        "bcrypt_rounds": 4,
        "python_processes": 1,
        "refresh_sizes": (50, 100, 200),
        "token_list_cap": 200,
        "purge_expired": 300,
        "purge_live": 50,
        "purge_watch": 10.0,
        "server_purge_interval": 0.5,
        "uncached_token_cap": 500,
        "throughput_rounds": 1,
        "limits_rounds": 1,
        "revocation_samples": 2,
        "revocation_poll": 0.2,
        "legit_addresses": 16,
        "flood_addresses": 64,
        "flood_ramp": 0.1,
        "long_rotations": 100,
        "connections": Connections(
            throughput=2,
            refresh=2,
            probe=1,
            signin_per_hash_thread=2,
            legit=1,
            flood=2,
            long_chains=2,
        ),
    },
}


def make_config(mode: str, **overrides: object) -> BenchConfig:
    """The preset of `mode` with the overrides that are not None."""
    values = {**PRESETS[mode], **{k: v for k, v in overrides.items() if v is not None}}
    return BenchConfig(mode=mode, **values)

"""How big and how long: one frozen config per run, from a preset (full, quick, smoke)
and the command line's overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class Connections:
    """Closed-loop connections per kind of load. Throughput loads use enough to keep the
    server busy; latency probes use few, so that queueing in the probe itself stays small."""

    throughput: int = 16
    refresh: int = 8
    probe: int = 4
    purge_probe: int = 2  # per route: the purge's effect, not queueing, should show
    signin_per_hash_thread: int = 4


@dataclass(frozen=True)
class BenchConfig:
    mode: str = "full"
    duration: float = 5.0  # seconds per measurement
    warmup: float = 1.0  # seconds of unmeasured load before a throughput measurement
    bcrypt_rounds: int = 10
    generator: str = "auto"  # auto | wrk | python
    python_processes: int = field(default_factory=lambda: os.cpu_count() or 2)
    postgres_dsn: str = ""
    refresh_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    token_list_cap: int = 50_000  # fresh tokens handed to the generator per measurement
    purge_expired: int = 1_000_000
    purge_live: int = 10_000
    purge_watch: float = 120.0  # most seconds phase 5 watches a purge (then: its rate)
    server_purge_interval: float = 2.0  # phase 5's in-server purge starts within this
    worker_counts: tuple[int, ...] = (1, 2)
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
        "connections": Connections(
            throughput=2, refresh=2, probe=1, signin_per_hash_thread=2
        ),
    },
}


def make_config(mode: str, **overrides: object) -> BenchConfig:
    """The preset of `mode` with the overrides that are not None."""
    values = {**PRESETS[mode], **{k: v for k, v in overrides.items() if v is not None}}
    return BenchConfig(mode=mode, **values)

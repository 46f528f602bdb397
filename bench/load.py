"""What a load generator is asked to do and what it answers, whichever generator runs it.

Two generators implement `start(spec) -> LoadRun`: wrk (bench/wrk.py), chosen when it is
on PATH, and the Python fallback (bench/pyload.py). Both run in processes of their own,
never on the server's event loop, and both stop early on SIGINT and still report.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

RESULT_MARK = "BENCH_JSON "
REFRESH_FIELD = "refreshToken"


@dataclass(frozen=True)
class LoadSpec:
    """One measurement: `connections` closed-loop keep-alive connections for `duration` s.

    With `token_file`, each request is POST {"refreshToken": <token>} with the next unused
    token of the file, then the successors the responses return: every request presents a
    token never presented before, so every request is a real rotation.

    With `access_tokens`, each request sends the next access token of that file in
    `x-access-token` (the file is read in order; `details["repeated"]` counts requests
    that had to start it over). With `junk_paths`, each request is POST {"refreshToken":
    <random>} to the next of these paths. With `forwarded`, (first IPv4 address, pool
    size), each request carries the next address of the pool in X-Forwarded-For. Statuses
    in `expected` are answers, not errors (a flood's 403s and 429s).
    """

    name: str
    url: str
    path: str
    duration: float
    connections: int
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    token_file: Path | None = None
    access_tokens: Path | None = None
    junk_paths: tuple[str, ...] = ()
    forwarded: tuple[str, int] | None = None
    expected: tuple[int, ...] = ()

    @property
    def presents_tokens(self) -> bool:
        """Each request uses up tokens of a file: a warm-up would need its own."""
        return self.token_file is not None or self.access_tokens is not None

    def all_headers(self) -> tuple[tuple[str, str], ...]:
        if self.body is not None or self.token_file is not None or self.junk_paths:
            return (*self.headers, ("Content-Type", "application/json"))
        return self.headers


@dataclass
class LoadResult:
    """Latencies in milliseconds; `errors` counts socket errors and 4xx/5xx answers whose
    status is not in the spec's `expected`. `details["limited"]` counts 429 answers
    (wrk looks at statuses only for specs with `expected` or `token_file`)."""

    name: str
    generator: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    generator_cpu_s: float
    server_cpu_s: float | None = None  # None: not measured (loads running side by side)
    details: dict = field(default_factory=dict)

    @property
    def server_cpu_pct(self) -> float | None:
        if self.server_cpu_s is None or not self.duration_s:
            return None
        return 100 * self.server_cpu_s / self.duration_s

    @property
    def generator_cpu_pct(self) -> float:
        return 100 * self.generator_cpu_s / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        server = self.server_cpu_pct
        data["server_cpu_pct"] = None if server is None else round(server, 1)
        data["generator_cpu_pct"] = round(self.generator_cpu_pct, 1)
        return data


class Generator(Protocol):
    name: str

    def start(self, spec: LoadSpec) -> LoadRun: ...


class LoadRun:
    """A generator process at work: `stop()` ends it early, `result()` waits for it."""

    def __init__(
        self, spec: LoadSpec, generator: str, process: subprocess.Popen
    ) -> None:
        self.spec = spec
        self.generator = generator
        self.process = process

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def result(self) -> LoadResult:
        timeout = self.spec.duration + 30
        try:
            out, err = self.process.communicate(timeout=timeout)
        except BaseException:
            self.kill()
            raise
        return parse_result(self.spec, self.generator, out, err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def parse_result(spec: LoadSpec, generator: str, out: str, err: str) -> LoadResult:
    """The generator's one JSON line: durations in seconds, latencies in microseconds."""
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            raw = json.loads(line[len(RESULT_MARK) :])
            break
    else:
        raise RuntimeError(f"{generator} gave no result for {spec.name}:\n{out}\n{err}")
    duration = raw["duration_s"]
    return LoadResult(
        name=spec.name,
        generator=generator,
        connections=spec.connections,
        duration_s=duration,
        requests=raw["requests"],
        errors=raw["errors"],
        rps=raw["requests"] / duration if duration else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        generator_cpu_s=raw["cpu_s"],
        details=raw.get("details", {}),
    )


def whole_seconds(duration: float) -> int:
    """wrk takes whole seconds."""
    return max(1, math.ceil(duration))


def pick_generator(choice: str, python_processes: int) -> Generator:
    """wrk when asked for or on PATH (with `auto`); the Python client otherwise."""
    from .pyload import PythonGenerator
    from .wrk import WrkGenerator

    wrk = shutil.which("wrk")
    if choice == "wrk" and not wrk:
        raise SystemExit("--generator wrk: wrk is not on PATH (apt-get install -y wrk)")
    if choice in ("wrk", "auto") and wrk:
        return WrkGenerator(wrk)
    return PythonGenerator(python_processes)

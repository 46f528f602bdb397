"""The benchmark's plumbing, end to end: `python -m bench --smoke` starts every server,
seeds, loads, purges and reports, with tiny seeds and 0.2 s loads. It asserts that every
phase ran and every file was written, never a timing: those belong to real runs.

The phases run as separate smoke runs side by side (each its own process, scratch folder,
ports and results folder), most of a run being waits for processes to start: phases 1-6,
phases 7-11 and, with AUTH_TEST_POSTGRES_DSN, phases 9-11 on PostgreSQL only (seeding by
COPY, two instances on one schema, the schema dropped afterwards)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The Python generator whether or not wrk is installed: the test must not depend on it.
SMOKE = ["-m", "bench", "--smoke", "--generator", "python"]
POSTGRES_DSN = os.environ.get("AUTH_TEST_POSTGRES_DSN", "")
RUNS = {"first": range(1, 7), "new": range(7, 12)}
POSTGRES_PHASES = (9, 10, 11)
TIMEOUT_S = 240


@dataclass
class Run:
    out: Path
    returncode: int
    stdout: str
    stderr: str

    def results(self) -> dict:
        assert self.returncode == 0, self.stderr[-3000:]
        results = json.loads((self.out / "latest.json").read_text())
        assert results["errors"] == []
        loads = results["loads"]
        assert loads and all(load["errors"] == 0 for load in loads), loads
        assert not list(self.out.glob("*.tmp"))
        return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    commands = {name: ["--phases", *map(str, phases)] for name, phases in RUNS.items()}
    if POSTGRES_DSN:
        commands["postgres"] = [
            "--phases",
            *map(str, POSTGRES_PHASES),
            "--postgres-dsn",
            POSTGRES_DSN,
            "--postgres-only",
        ]
    started = {}
    try:
        for name, extra in commands.items():
            out = tmp_path_factory.mktemp(name)
            started[name] = (
                out,
                subprocess.Popen(
                    [sys.executable, *SMOKE, "--out", str(out), *extra],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        finished = {}
        for name, (out, process) in started.items():
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            finished[name] = Run(out, process.returncode, stdout, stderr)
        yield finished
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_smoke_runs_write_every_phase(runs: dict[str, Run]) -> None:
    first, new = runs["first"].results(), runs["new"].results()
    for name, results in (("first", first), ("new", new)):
        assert results["machine"]["generator"].startswith("python")
        phases = {figure["phase"] for figure in results["figures"]}
        assert phases == set(RUNS[name])
        markdown = (runs[name].out / "latest.md").read_text()
        width = len(str(max(phases)))
        assert f"| {'#':<{width}} | figure" in runs[name].stdout
        assert all(f"\n| {phase:<{width}} " in markdown for phase in phases)
        if importlib.util.find_spec("matplotlib"):
            png = runs[name].out / "latest.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert "matplotlib is not installed" in markdown
    series = new["series"]
    assert set(series["revocation"]) == set(series["flood"]) == {"sqlite"}
    assert len(series["revocation"]["sqlite"]["samples_ms"]) == 2
    assert series["uncached"]["tokens"] > 0
    assert series["limits"]["on"]["limited"] == 0
    assert series["longlived"]["sqlite"]["rotations"] == 100


@pytest.mark.skipif(not POSTGRES_DSN, reason="AUTH_TEST_POSTGRES_DSN is not set")
def test_smoke_run_on_postgres(runs: dict[str, Run]) -> None:
    results = runs["postgres"].results()
    assert {figure["phase"] for figure in results["figures"]} == set(POSTGRES_PHASES)
    titles = [figure["title"] for figure in results["figures"]]
    assert all("postgres" in title for title in titles), titles
    for name in ("revocation", "flood", "longlived"):
        assert set(results["series"][name]) == {"postgres"}

"""The benchmark's plumbing, end to end: `python -m bench --smoke` starts every server,
seeds, loads, purges and reports, with tiny seeds and 0.2 s loads. It asserts that every
phase ran and every file was written, never a timing: those belong to real runs.

With AUTH_TEST_POSTGRES_DSN, a second run covers the phases that also run on PostgreSQL
(seeding by COPY, two instances on one schema, the schema dropped afterwards)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PHASES = set(range(1, 12))
POSTGRES_PHASES = {4, 9, 10, 11}
# The Python generator whether or not wrk is installed: the test must not depend on it.
SMOKE = ["-m", "bench", "--smoke", "--generator", "python"]
POSTGRES_DSN = os.environ.get("AUTH_TEST_POSTGRES_DSN", "")


def _run(out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    finished = subprocess.run(
        [sys.executable, *SMOKE, "--out", str(out), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())
    assert results["errors"] == []
    assert results["loads"] and all(load["errors"] == 0 for load in results["loads"])
    return finished, results


def test_smoke_run_writes_every_phase(tmp_path: Path) -> None:
    finished, results = _run(tmp_path)
    assert "| #  | figure" in finished.stdout
    assert results["machine"]["generator"].startswith("python")
    assert {figure["phase"] for figure in results["figures"]} == PHASES
    series = results["series"]
    assert set(series["revocation"]) == set(series["flood"]) == {"sqlite"}
    assert len(series["revocation"]["sqlite"]["samples_ms"]) == 2
    assert series["uncached"]["tokens"] > 0
    assert series["limits"]["on"]["limited"] == 0
    assert series["longlived"]["sqlite"]["rotations"] == 100
    markdown = (tmp_path / "latest.md").read_text()
    assert all(f"\n| {phase:<2} " in markdown for phase in PHASES)
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in markdown
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(not POSTGRES_DSN, reason="AUTH_TEST_POSTGRES_DSN is not set")
def test_smoke_run_on_postgres(tmp_path: Path) -> None:
    phases = [str(phase) for phase in sorted(POSTGRES_PHASES)]
    _, results = _run(
        tmp_path, "--phases", *phases, "--postgres-dsn", POSTGRES_DSN, "--postgres-only"
    )
    assert {figure["phase"] for figure in results["figures"]} == POSTGRES_PHASES
    titles = [figure["title"] for figure in results["figures"]]
    assert all("postgres" in title for title in titles), titles
    for name in ("revocation", "flood", "longlived"):
        assert set(results["series"][name]) == {"postgres"}

"""The benchmark's plumbing, end to end: `python -m bench --smoke` starts every server,
seeds, loads, purges and reports, with tiny seeds and 0.3 s loads. It asserts that every
phase ran and every file was written, never a timing: those belong to real runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = {1, 2, 3, 4, 5, 6}
# The Python generator whether or not wrk is installed: the test must not depend on it.
SMOKE = ["-m", "bench", "--smoke", "--generator", "python"]


def test_smoke_run_writes_every_phase(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, *SMOKE, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "| # | figure" in finished.stdout
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["errors"] == []
    assert results["machine"]["generator"].startswith("python")
    assert {figure["phase"] for figure in results["figures"]} == PHASES
    assert results["loads"] and all(load["errors"] == 0 for load in results["loads"])
    markdown = (tmp_path / "latest.md").read_text()
    assert all(f"\n| {phase} " in markdown for phase in PHASES)
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in markdown
    assert not list(tmp_path.glob("*.tmp"))

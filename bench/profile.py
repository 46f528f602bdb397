"""Optional py-spy sampling of the server during each measurement (`--profile DIR`):
collapsed stacks (one `.txt` per measurement, flamegraph.pl/speedscope input), so a slow
figure comes with where the server spent its time."""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


class Profiler:
    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.executable = shutil.which("py-spy") or _beside_python("py-spy")
        if out_dir is not None and self.executable is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def recording(self, name: str, pid: int, duration: float) -> Iterator[None]:
        """Sample `pid` and its children for `duration` seconds while the body runs."""
        if self.out_dir is None or self.executable is None:
            yield
            return
        output = self.out_dir / f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}.txt"
        command = [self.executable, "record", "--pid", str(pid), "--subprocesses"]
        command += ["--nonblocking", "--rate", "200", "--format", "raw"]
        command += ["--duration", str(math.ceil(duration)), "-o", str(output)]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            yield
        finally:
            try:
                process.wait(timeout=duration + 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None

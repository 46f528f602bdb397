"""The run's record and its three renderings: a markdown table (printed and written),
JSON with every raw measurement, and a PNG with one panel per phase."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .load import LoadResult

PHASE_TITLES = {
    1: "Protected route vs bare aiohttp",
    2: "Sign-in vs bcrypt bound",
    3: "Event loop under a sign-in storm",
    4: "Refresh with rotation vs stored tokens",
    5: "Purge under load",
    6: "Workers",
    7: "Protected route, uncached, vs bare aiohttp",
    8: "Refresh with rate limits on",
    9: "Revocation across instances",
    10: "Valid refreshes under a junk flood",
    11: "Long-lived sessions",
}


@dataclass
class Figure:
    """One row of the table: a measured value against a reference measured in the same
    run, their ratio, and the target it is reported against (never asserted)."""

    phase: int
    title: str
    value: str
    reference: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None


@dataclass
class Results:
    machine: dict
    config: dict
    figures: list[Figure] = field(default_factory=list)
    loads: list[LoadResult] = field(default_factory=list)
    series: dict[str, dict] = field(default_factory=dict)  # what the plot draws
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def phases_present(self) -> set[int]:
        return {figure.phase for figure in self.figures}

    def as_dict(self) -> dict:
        return {
            "machine": self.machine,
            "config": self.config,
            "figures": [asdict(figure) for figure in self.figures],
            "loads": [load.as_dict() for load in self.loads],
            "series": self.series,
            "notes": self.notes,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 1),
        }


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "-"}[passed]


def table(results: Results) -> str:
    """The one table: every figure, its reference, ratio and target."""
    rows = [
        ["#", "figure", "measured", "reference (same run)", "ratio", "target", "pass"]
    ]
    for f in sorted(results.figures, key=lambda figure: figure.phase):
        ratio = f"{f.ratio:.3f}" if f.ratio is not None else "-"
        rows.append(
            [str(f.phase), f.title, f.value, f.reference or "-", ratio, f.target or "-"]
        )
        rows[-1].append(verdict(f.passed))
    return _markdown(rows)


def loads_table(results: Results) -> str:
    rows = [
        ["measurement", "conns", "s", "requests", "errors", "req/s", "p50 ms", "p99 ms"]
    ]
    rows[0] += ["max ms", "server CPU %", "generator CPU %"]
    for r in results.loads:
        counts = [r.name, str(r.connections), f"{r.duration_s:.1f}", str(r.requests)]
        latency = [
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.max_ms:.1f}",
        ]
        server = "-" if r.server_cpu_pct is None else f"{r.server_cpu_pct:.0f}"
        cpu = [server, f"{r.generator_cpu_pct:.0f}"]
        rows.append([*counts, str(r.errors), *latency, *cpu])
    return _markdown(rows)


def header(results: Results) -> str:
    m, c = results.machine, results.config
    return (
        f"{m['cores']} cores, {m['cpu']}, Python {m['python']}; generator: {m['generator']}; "
        f"mode {c['mode']}, {c['duration']} s per measurement, bcrypt cost "
        f"{c['bcrypt_rounds']}; {results.elapsed_s:.0f} s in all"
    )


def markdown(results: Results, png_name: str | None) -> str:
    parts = [
        "# Benchmark results",
        header(results),
        table(results),
        f"![figures]({png_name})" if png_name else "(no plot)",
        "## Every measurement",
        "CPU % is of one core: 100 = one core busy for the whole measurement "
        "(server CPU is not split between loads that ran side by side: `-`).",
        loads_table(results),
    ]
    if results.notes:
        parts += ["## Notes", "\n".join(f"- {note}" for note in results.notes)]
    if results.errors:
        parts += ["## Errors", "\n".join(f"- {error}" for error in results.errors)]
    return "\n\n".join(parts) + "\n"


def write(results: Results, out_dir: Path, stem: str = "latest") -> list[Path]:
    """latest.md, latest.json and latest.png, each written whole or not at all. Without
    matplotlib (a dev requirement) the tables are still written, and say so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{stem}.png"
    plotting = importlib.util.find_spec("matplotlib") is not None
    if not plotting:
        results.notes.append("matplotlib is not installed: no PNG was drawn")
    text = markdown(results, png.name if plotting else None)
    data = json.dumps(results.as_dict(), indent=2)
    written = [
        _atomic(out_dir / f"{stem}.md", text.encode()),
        _atomic(out_dir / f"{stem}.json", data.encode()),
    ]
    if plotting:
        from .plot import plot

        tmp = png.with_name(png.name + ".tmp")
        plot(results, tmp)
        os.replace(tmp, png)
        written.append(png)
    return written


def _atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _markdown(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)

"""The PNG: one panel per phase, drawn from `Results.series` with matplotlib's Agg backend
(no display needed). A phase that did not run leaves its panel saying so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .report import PHASE_TITLES, Results, header


def plot(results: Results, path: Path) -> None:
    figure, axes = plt.subplots(3, 4, figsize=(20, 13))
    panels: list[tuple[str, Callable[[Axes, dict], None]]] = [
        ("protected", _protected),
        ("signin", _signin),
        ("storm", _storm),
        ("refresh", _refresh),
        ("purge", _purge),
        ("workers", _workers),
        ("uncached", _uncached),
        ("limits", _limits),
        ("revocation", _revocation),
        ("flood", _flood),
        ("longlived", _longlived),
    ]
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for number, (ax, (key, draw)) in enumerate(
        zip(axes.flat, panels, strict=False), start=1
    ):
        ax.set_title(f"{number}. {PHASE_TITLES[number]}", fontsize=10)
        if key in results.series:
            draw(ax, results.series[key])
        else:
            ax.text(
                0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes
            )
    figure.suptitle(header(results), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    plt.close(figure)


def _bars(ax: Axes, labels: list[str], values: list[float], unit: str) -> None:
    palette = ["#999999", "#3874b8", "#d9822b", "#4a9a4a"]
    bars = ax.bar(
        labels, values, color=[palette[i % len(palette)] for i in range(len(values))]
    )
    ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values])
    ax.set_ylabel(unit)


def _protected(ax: Axes, data: dict) -> None:
    _bars(
        ax,
        ["bare aiohttp", "protected route"],
        [data["bare"]["rps"], data["auth"]["rps"]],
        "req/s",
    )


def _uncached(ax: Axes, data: dict) -> None:
    _bars(
        ax,
        ["bare aiohttp", "a new token\nevery request"],
        [data["bare"]["rps"], data["auth"]["rps"]],
        "req/s",
    )


def _signin(ax: Axes, data: dict) -> None:
    _bars(
        ax,
        [f"bcrypt bound\n({data['cores']} cores)", "sign-in"],
        [data["bound"], data["rps"]],
        "req/s",
    )


def _storm(ax: Axes, data: dict) -> None:
    labels = ["idle p50", "storm p50", "idle p99", "storm p99"]
    values = [data["idle"]["p50_ms"], data["storm"]["p50_ms"]]
    values += [data["idle"]["p99_ms"], data["storm"]["p99_ms"]]
    _bars(ax, labels, values, "ms")


def _refresh(ax: Axes, data: dict) -> None:
    latency = ax.twinx()
    for backend, points in data.items():
        tokens = [p["tokens"] for p in points]
        ax.plot(
            tokens, [p["rps"] for p in points], marker="o", label=f"{backend} req/s"
        )
        latency.plot(
            tokens,
            [p["p99_ms"] for p in points],
            marker="x",
            linestyle="--",
            label=f"{backend} p99",
        )
    ax.set_xscale("log")
    ax.set_xlabel("stored refresh tokens")
    ax.set_ylabel("req/s")
    ax.set_ylim(bottom=0)
    latency.set_ylabel("p99 ms")
    latency.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = latency.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower left")


def _purge(ax: Axes, data: dict) -> None:
    labels, values = [], []
    for mode in ("cli", "server"):
        if mode in data:
            for when in ("without", "during"):
                labels.append(f"{mode}\n{when}")
                values.append(data[mode][when]["max_ms"])
    _bars(ax, labels, values, "worst latency, ms")
    ax.axhline(100, color="red", linewidth=0.8, linestyle=":")
    ax.set_xlabel(f"purge of {data['expired']:,} expired tokens")


def _workers(ax: Axes, data: dict) -> None:
    labels, values = [], []
    for route, by_workers in data.items():
        for workers, rps in by_workers.items():
            labels.append(f"{route}\n{workers} worker{'s' if workers != '1' else ''}")
            values.append(rps)
    _bars(ax, labels, values, "req/s")


def _limits(ax: Axes, data: dict) -> None:
    _bars(
        ax,
        ["bare aiohttp", "refresh,\nlimits off", "refresh,\nlimits on"],
        [data["bare"]["rps"], data["off"]["rps"], data["on"]["rps"]],
        "req/s",
    )
    ax.set_yscale("log")


def _revocation(ax: Axes, data: dict) -> None:
    labels, values = [], []
    for backend, figures in data.items():
        labels += [f"{backend}\np50", f"{backend}\np99"]
        values += [figures["p50_ms"], figures["p99_ms"]]
    _bars(ax, labels, values, "sign-out on A to token_revoked on B, ms")
    ax.axhline(100, color="red", linewidth=0.8, linestyle=":")


def _flood(ax: Axes, data: dict) -> None:
    labels, values = [], []
    for backend, figures in data.items():
        labels += [f"{backend}\nalone", f"{backend}\nunder flood"]
        values += [figures["alone"]["p99_ms"], figures["under"]["p99_ms"]]
    _bars(ax, labels, values, "valid refresh p99, ms")


def _longlived(ax: Axes, data: dict) -> None:
    labels, values = [], []
    for backend, figures in data.items():
        fresh = sum(p["rps"] for p in figures["fresh"]) / len(figures["fresh"])
        labels += [
            f"{backend}\nfresh",
            f"{backend}\n{figures['rotations']:,} rotations",
        ]
        values += [fresh, figures["long"]["rps"]]
    _bars(ax, labels, values, "refresh req/s")

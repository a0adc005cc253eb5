"""Ratio rows, the Markdown report and the optional growth plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Ratio:
    """One line of a ratio table: ours / peer on one metric, with the issue's goal."""

    scenario: str
    ours: str
    peer: str
    metric: str
    ours_value: float | None
    peer_value: float | None
    goal: float | None = None  # met when ratio <= goal
    unit: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours_value is None or self.peer_value in (None, 0):
            return None
        return self.ours_value / self.peer_value  # type: ignore[operator]

    @property
    def status(self) -> str:
        if self.goal is None:
            return ""
        if self.ratio is None:
            return "not measured"
        return "met" if self.ratio <= self.goal else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ours": self.ours,
            "peer": self.peer,
            "metric": self.metric,
            "unit": self.unit,
            "ours_value": self.ours_value,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "goal_max_ratio": self.goal,
            "status": self.status,
        }


@dataclass
class Check:
    """An absolute goal (a latency bound, zero errors, linear growth)."""

    scenario: str
    target: str
    metric: str
    value: float | None
    limit: float
    unit: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        return "met" if self.value <= self.limit else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target": self.target,
            "metric": self.metric,
            "unit": self.unit,
            "value": self.value,
            "limit": self.limit,
            "status": self.status,
        }


def dig(results: dict[str, Any], name: str, *path: str) -> float | None:
    """results[name][path...] when it is a number, else None (skipped, failed)."""
    value: Any = results.get(name)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B":
        for scale, suffix in ((1 << 20, " MiB"), (1 << 10, " KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f}{suffix}"
        return f"{value:.0f} B"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def ratio_table(ratios: list[Ratio]) -> list[str]:
    lines = [
        "| scenario | ours | peer | metric | ours | peer | ratio (ours/peer) | goal | status |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in ratios:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        goal = "" if r.goal is None else f"<= {r.goal:g}"
        lines.append(
            f"| {r.scenario} | {r.ours} | {r.peer} | {r.metric} | {fmt(r.ours_value, r.unit)} "
            f"| {fmt(r.peer_value, r.unit)} | {ratio} | {goal} | {r.status} |"
        )
    return lines


def check_table(checks: list[Check]) -> list[str]:
    lines = [
        "| scenario | target | metric | value | limit | status |",
        "|---|---|---|---:|---:|---|",
    ]
    for c in checks:
        lines.append(
            f"| {c.scenario} | {c.target} | {c.metric} | {fmt(c.value, c.unit)} "
            f"| {fmt(c.limit, c.unit)} | {c.status} |"
        )
    return lines


def detail_table(
    results: dict[str, Any], columns: list[tuple[str, Callable[[dict[str, Any]], Any], str]]
) -> list[str]:
    """One row per configuration with absolute numbers; skipped ones say why."""
    header = "| configuration | " + " | ".join(c[0] for c in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for name, value in results.items():
        if "skipped" in value:
            lines.append(f"| {name} | skipped: {value['skipped']} |" + " |" * (len(columns) - 1))
            continue
        if "error" in value:
            lines.append(f"| {name} | ERROR: {value['error']} |" + " |" * (len(columns) - 1))
            continue
        cells = []
        for _, get, unit in columns:
            try:
                cell = get(value)
            except (KeyError, TypeError):
                cell = None
            cells.append(fmt(cell, unit) if not isinstance(cell, str) else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot_growth(growth: dict[str, Any], path: Path) -> str | None:
    """Scenario 2 as a PNG (stored bytes and turn latency per turn); None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in growth.items():
        if not isinstance(result, dict) or "curve" not in result:
            continue
        points = [(t, b) for t, b in result["curve"] if b is not None]
        if points:
            left.plot(
                [t for t, _ in points],
                [b / (1 << 20) for _, b in points],
                marker="o",
                markersize=3,
                label=name,
            )
        latencies = result.get("latencies_ms") or []
        right.plot(range(1, len(latencies) + 1), latencies, linewidth=0.8, label=name)
    left.set_xlabel("turn")
    left.set_ylabel("stored MiB (measured)")
    left.set_title("Scenario 2: stored bytes")
    left.legend()
    right.set_xlabel("turn")
    right.set_ylabel("turn latency, ms")
    right.set_yscale("log")
    right.set_title("Scenario 2: per-turn latency")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)

"""Ratio rows, the Markdown report and the optional growth plot."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
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
    #: with --repeat: the ratio of each repetition (the row shows their median)
    runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.runs:
            return statistics.median(self.runs)
        if self.ours_value is None or self.peer_value in (None, 0):
            return None
        return self.ours_value / self.peer_value  # type: ignore[operator]

    @property
    def single_ratio(self) -> float | None:
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
            "ratio_min": min(self.runs) if self.runs else self.ratio,
            "ratio_max": max(self.runs) if self.runs else self.ratio,
            "ratio_runs": self.runs,
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
    #: with --repeat: the value of each repetition (`value` is their median)
    runs: list[float] = field(default_factory=list)

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
            "value_runs": self.runs,
            "limit": self.limit,
            "status": self.status,
        }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def merge_ratios(repeats: list[list[Ratio]]) -> list[Ratio]:
    """One row per (scenario, ours, peer, metric) over the repetitions: median values and
    the median of the per-repetition ratios, whose min and max the table shows."""
    merged: dict[tuple[str, str, str, str], list[Ratio]] = {}
    for rows in repeats:
        for r in rows:
            merged.setdefault((r.scenario, r.ours, r.peer, r.metric), []).append(r)
    out = []
    for rows in merged.values():
        first = rows[0]
        runs = [x for x in (r.single_ratio for r in rows) if x is not None]
        out.append(
            Ratio(
                first.scenario,
                first.ours,
                first.peer,
                first.metric,
                _median([r.ours_value for r in rows]),
                _median([r.peer_value for r in rows]),
                first.goal,
                first.unit,
                runs,
            )
        )
    return out


def merge_checks(repeats: list[list[Check]]) -> list[Check]:
    """One row per (scenario, target, metric): the median value, min and max shown."""
    merged: dict[tuple[str, str, str], list[Check]] = {}
    for rows in repeats:
        for c in rows:
            merged.setdefault((c.scenario, c.target, c.metric), []).append(c)
    out = []
    for rows in merged.values():
        first = rows[0]
        runs = [c.value for c in rows if c.value is not None]
        out.append(
            Check(
                first.scenario,
                first.target,
                first.metric,
                _median(runs),  # type: ignore[arg-type]
                first.limit,
                first.unit,
                runs,
            )
        )
    return out


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


def _spread(runs: list[float], unit: str = "", *, ratio: bool = True) -> str:
    if len(runs) < 2:
        return ""
    if ratio:
        return f"{min(runs):.3f}..{max(runs):.3f} ({len(runs)})"
    return f"{fmt(min(runs), unit)}..{fmt(max(runs), unit)} ({len(runs)})"


def ratio_table(ratios: list[Ratio]) -> list[str]:
    """Markdown rows; with repetitions the ratio is their median and a min..max column
    (with the number of repetitions that measured it) is added."""
    spread = any(len(r.runs) > 1 for r in ratios)
    head = "| scenario | ours | peer | metric | ours | peer | ratio (ours/peer) |"
    rule = "|---|---|---|---|---:|---:|---:|"
    if spread:
        head += " min..max (runs) |"
        rule += "---:|"
    lines = [head + " goal | status |", rule + "---:|---|"]
    for r in ratios:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        goal = "" if r.goal is None else f"<= {r.goal:g}"
        extra = f" {_spread(r.runs)} |" if spread else ""
        lines.append(
            f"| {r.scenario} | {r.ours} | {r.peer} | {r.metric} | {fmt(r.ours_value, r.unit)} "
            f"| {fmt(r.peer_value, r.unit)} | {ratio} |{extra} {goal} | {r.status} |"
        )
    return lines


def check_table(checks: list[Check]) -> list[str]:
    spread = any(len(c.runs) > 1 for c in checks)
    head = "| scenario | target | metric | value |"
    rule = "|---|---|---|---:|"
    if spread:
        head += " min..max (runs) |"
        rule += "---:|"
    lines = [head + " limit | status |", rule + "---:|---|"]
    for c in checks:
        extra = f" {_spread(c.runs, c.unit, ratio=False)} |" if spread else ""
        lines.append(
            f"| {c.scenario} | {c.target} | {c.metric} | {fmt(c.value, c.unit)} |{extra} "
            f"{fmt(c.limit, c.unit)} | {c.status} |"
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

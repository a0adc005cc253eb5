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
    #: errors of each side (summed over the repetitions); any error fails the row
    ours_errors: int = 0
    peer_errors: int = 0
    #: with --repeat: the errors of each side in each repetition
    ours_errors_runs: list[int] = field(default_factory=list)
    peer_errors_runs: list[int] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A side that errored: the row shows no ratio, only the error counts."""
        return self.ours_errors > 0 or self.peer_errors > 0

    @property
    def ratio(self) -> float | None:
        if self.failed:
            return None
        if self.runs:
            return statistics.median(self.runs)
        return self.single_ratio

    @property
    def single_ratio(self) -> float | None:
        if self.failed or self.ours_value is None or self.peer_value in (None, 0):
            return None
        return self.ours_value / self.peer_value  # type: ignore[operator]

    @property
    def failure(self) -> str:
        """The status of a row with errors, FAILED (name: N errors; ...), else ""."""
        sides = [
            f"{name}: {n} error{'' if n == 1 else 's'}"
            for name, n in ((self.ours, self.ours_errors), (self.peer, self.peer_errors))
            if n
        ]
        return f"FAILED ({'; '.join(sides)})" if sides else ""

    @property
    def status(self) -> str:
        if self.failed:
            return self.failure
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
            "ratio_min": min(self.runs) if self.runs and not self.failed else self.ratio,
            "ratio_max": max(self.runs) if self.runs and not self.failed else self.ratio,
            "ratio_runs": [] if self.failed else self.runs,
            "goal_max_ratio": self.goal,
            "failed": self.failed,
            "ours_errors": self.ours_errors,
            "peer_errors": self.peer_errors,
            "ours_errors_runs": self.ours_errors_runs or [self.ours_errors],
            "peer_errors_runs": self.peer_errors_runs or [self.peer_errors],
            "status": self.status,
        }


def errors_text(n: int) -> str:
    return f"failed ({n} error{'' if n == 1 else 's'})"


def errors_of(results: dict[str, Any], name: str, key: str = "errors") -> int:
    """How many errors configuration `name` had in `results`: its `key` count, at least 1
    when it raised as a whole ({"error": ...}); 0 when it is absent or skipped."""
    value = results.get(name)
    if not isinstance(value, dict) or "skipped" in value:
        return 0
    count = value.get(key, 0)
    count = count if isinstance(count, int) else 0
    return max(count, 1) if "error" in value else count


def tag_errors(
    ratios: list[Ratio],
    errors: Callable[[str], int],
    *,
    where: Callable[[Ratio], bool] | None = None,
) -> list[Ratio]:
    """Set each row's error counts from `errors(configuration name)` (the rows `where`
    selects, default all)."""
    for r in ratios:
        if where is None or where(r):
            r.ours_errors, r.peer_errors = errors(r.ours), errors(r.peer)
    return ratios


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
    #: errors of the target (summed over the repetitions); any error fails the check
    errors: int = 0

    @property
    def status(self) -> str:
        if self.errors:
            return f"FAILED ({self.target}: {self.errors} error{'' if self.errors == 1 else 's'})"
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
            "errors": self.errors,
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
                ours_errors=sum(r.ours_errors for r in rows),
                peer_errors=sum(r.peer_errors for r in rows),
                ours_errors_runs=[r.ours_errors for r in rows],
                peer_errors_runs=[r.peer_errors for r in rows],
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
                errors=sum(c.errors for c in rows),
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
    if isinstance(value, int) and unit != "B":  # counts: errors, runs
        return f"{value} {unit}".rstrip()
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
        goal = "" if r.goal is None else f"<= {r.goal:g}"
        if r.failed:
            # A side that errored is never shown as a ratio, nor as a value beside one.
            ours = errors_text(r.ours_errors) if r.ours_errors else fmt(r.ours_value, r.unit)
            peer = errors_text(r.peer_errors) if r.peer_errors else fmt(r.peer_value, r.unit)
            ratio = errors_text(r.ours_errors + r.peer_errors)
            extra = " - |" if spread else ""
        else:
            ours, peer = fmt(r.ours_value, r.unit), fmt(r.peer_value, r.unit)
            ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
            extra = f" {_spread(r.runs)} |" if spread else ""
        lines.append(
            f"| {r.scenario} | {r.ours} | {r.peer} | {r.metric} | {ours} "
            f"| {peer} | {ratio} |{extra} {goal} | {r.status} |"
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
        value = errors_text(c.errors) if c.errors else fmt(c.value, c.unit)
        lines.append(
            f"| {c.scenario} | {c.target} | {c.metric} | {value} |{extra} "
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

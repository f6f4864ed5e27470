"""Repeated measurements summarised as median, min and max, and formatted for the reports' tables
(`zoo.cli.table`)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterable


def summary(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """{median, min, max, n} of repeated measurements of one figure."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summary of no measurements")

    def r(x: float) -> float:
        return float(f"{x:.{digits}g}")

    return {"median": r(statistics.median(vals)), "min": r(min(vals)), "max": r(max(vals)), "n": len(vals)}


def rate(fn: Callable[[], Any], items_per_call: int, min_seconds: float, min_calls: int = 3) -> float:
    """Items per second of `fn`, calling it until `min_seconds` have passed (at least min_calls)."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if calls >= min_calls and elapsed >= min_seconds:
            return calls * items_per_call / elapsed


def fmt(stat: dict[str, Any] | None, unit: str = "", digits: int = 3) -> str:
    """'median (min–max) unit' for tables."""
    if not stat:
        return "–"

    def g(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"

    return f"{g(stat['median'])}{unit} ({g(stat['min'])}–{g(stat['max'])})"


def fmt_pct(stat: dict[str, Any] | None) -> str:
    """A ratio as 'median% (min–max%)'."""
    if not stat:
        return "–"
    return f"{100 * stat['median']:.0f}% ({100 * stat['min']:.0f}–{100 * stat['max']:.0f}%)"

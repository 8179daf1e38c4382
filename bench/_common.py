"""Shared helpers for the bench scripts (run from the repository root with .venv/bin/python)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def percentile(values: list[float], q: float) -> float:
    """q in 0..100, nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> str:
    return (f"n={len(values)} p50={percentile(values, 50):.1f} p99={percentile(values, 99):.1f} "
            f"min={min(values):.1f} max={max(values):.1f} mean={statistics.fmean(values):.1f}")

"""Prometheus metrics without a dependency: counters, gauges and histograms, rendered in the
text exposition format (version 0.0.4). One registry per server process."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _fmt_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    #: Counts kept elsewhere (a component's own totals), read at each scrape, by labels.
    callback: Callable[[], dict[Labels, float]] | None = None

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = _labels(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(_labels(labels), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        values = dict(self.values)
        if self.callback is not None:
            values.update(self.callback())
        for labels, v in sorted(values.items()):
            yield f"{self.name}{_fmt_labels(labels)} {_num(v)}"


@dataclass
class Gauge:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)
    callback: Callable[[], float] | None = None

    def set(self, value: float, **labels: str) -> None:
        self.values[_labels(labels)] = value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        if self.callback is not None:
            yield f"{self.name} {_num(self.callback())}"
        for labels, v in sorted(self.values.items()):
            yield f"{self.name}{_fmt_labels(labels)} {_num(v)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0
        for bound, c in zip(self.buckets, self.counts, strict=True):
            cumulative += c
            yield f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.n}'
        yield f"{self.name}_sum {_num(self.total)}"
        yield f"{self.name}_count {self.n}"


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str, help: str,
                callback: Callable[[], dict[Labels, float]] | None = None) -> Counter:
        return self._add(Counter(name, help, callback=callback))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, callback: Callable[[], float] | None = None) -> Gauge:
        return self._add(Gauge(name, help, callback=callback))  # type: ignore[return-value]

    def histogram(self, name: str, help: str, buckets: tuple[float, ...] | None = None
                  ) -> Histogram:
        h = Histogram(name, help) if buckets is None else Histogram(name, help, buckets)
        return self._add(h)  # type: ignore[return-value]

    def add(self, metric: Counter | Gauge | Histogram) -> None:
        """Register a metric a component made itself (e.g. the mail queue's counters)."""
        self._add(metric)

    def _add(self, metric: Counter | Gauge | Histogram) -> Counter | Gauge | Histogram:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"

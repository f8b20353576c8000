"""Operational figures in the Prometheus text format.

Counters and histograms of this process live in :data:`METRICS`; gauges that
describe the whole cluster (seats occupied and free) are read from the store
when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Counter:
    __slots__ = ("name", "help", "label", "values")

    def __init__(self, name: str, help: str, label: str) -> None:
        self.name, self.help, self.label = name, help, label
        self.values: dict[str, float] = {}

    def inc(self, value: str, by: float = 1.0) -> None:
        self.values[value] = self.values.get(value, 0.0) + by

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for value, count in sorted(self.values.items()):
            yield f'{self.name}{{{self.label}="{value}"}} {count:g}'


class Histogram:
    __slots__ = ("name", "help", "bounds", "counts", "sum")

    def __init__(self, name: str, help: str, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.bounds = name, help, tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        total = 0
        for bound, count in zip((*self.bounds, "+Inf"), self.counts, strict=True):
            total += count
            yield f'{self.name}_bucket{{le="{bound}"}} {total}'
        yield f"{self.name}_sum {self.sum:.6f}"
        yield f"{self.name}_count {total}"


class Metrics:
    """This process's counters and histograms."""

    def __init__(self) -> None:
        self.events = Counter(
            "presence_events_total",
            "Events logged by this node (grants, denials, expiries, calls...).",
            "type",
        )
        self.cut_off = Counter(
            "presence_connections_cut_off_total",
            "Connections closed by the server for misbehaving, by reason.",
            "reason",
        )
        self.overloaded = Counter(
            "presence_logins_overloaded_total",
            "Logins refused with unavailable as they piled up, on the node or in a domain.",
            "stage",
        )
        self.webhook_deliveries = Counter(
            "presence_webhook_deliveries_total",
            "Attempts by this node to deliver an event to a webhook endpoint, by outcome.",
            "outcome",
        )
        self.heartbeat_seconds = Histogram(
            "presence_heartbeat_seconds", "Time to answer a heartbeat."
        )
        self.login_seconds = Histogram(
            "presence_login_seconds", "Time from hello to the answer (welcome, error or queued)."
        )

    def render(self, gauges: Iterable[str]) -> str:
        lines = [
            *self.events.render(),
            *self.cut_off.render(),
            *self.overloaded.render(),
            *self.webhook_deliveries.render(),
            *self.heartbeat_seconds.render(),
            *self.login_seconds.render(),
            *gauges,
        ]
        return "\n".join(lines) + "\n"


METRICS = Metrics()


def gauge(name: str, help: str, samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    """A gauge's lines; ``samples`` are (labels, value) pairs."""
    lines = [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

"""Pure queue arithmetic: parse one scrape, and sum a service's targets, refusing stale data.

The queue of an LLMService is the router's ``llmsvc_router_queue_length`` summed over its ready
router pods plus ``vllm:num_requests_waiting`` summed over its ready leader pods. Every ready
target must have a fresh scrape: a dead target is *missing data*, never a zero queue (a zero would
let the HPA scale down a service whose router has stopped counting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ROUTER_QUEUE = "llmsvc_router_queue_length"
ENGINE_QUEUE = "vllm:num_requests_waiting"
ROUTER_ACTIVE = "llmsvc_router_backend_in_flight"
ENGINE_ACTIVE = "vllm:num_requests_running"


@dataclass(frozen=True)
class Target:
    """One pod to scrape: its kind (``router`` or ``engine``), name and ``/metrics`` URL."""

    kind: str
    pod: str
    url: str

    @property
    def metric(self) -> str:
        """The gauge this kind of pod reports its queue in."""
        return ROUTER_QUEUE if self.kind == "router" else ENGINE_QUEUE

    @property
    def active_metric(self) -> str:
        """The gauge of requests being served (not waiting) for this kind of pod."""
        return ROUTER_ACTIVE if self.kind == "router" else ENGINE_ACTIVE


@dataclass(frozen=True)
class Sample:
    """One scrape: the queue gauge (None when absent), requests being served, or an error."""

    at: float
    value: float | None = None
    active: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class Reading:
    """A service's queue: ``value`` when every target is fresh, else the reasons it is missing."""

    value: float | None
    at: float
    missing: tuple[str, ...] = ()
    targets: int = 0
    active: float = 0.0

    @property
    def idle(self) -> bool:
        """Known to be doing nothing: nothing waiting and nothing being served."""
        return self.value == 0 and self.active == 0


def parse_gauge(text: str, name: str) -> float | None:
    """Sum of every sample of metric ``name`` in a Prometheus text exposition; None if absent."""
    total: float | None = None
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name) :]
        if rest[:1] not in ("{", " "):
            continue  # another metric whose name starts with ``name``
        value = _sample_value(rest)
        if value is not None:
            total = value if total is None else total + value
    return total


def _sample_value(rest: str) -> float | None:
    if rest.startswith("{"):
        end = rest.rfind("}")
        if end < 0:
            return None
        rest = rest[end + 1 :]
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _problem(target: Target, sample: Sample | None, now: float, max_age: float) -> str:
    """Why ``target`` has no usable value now ("" when it has one)."""
    if sample is None:
        return f"{target.kind} pod {target.pod}: not scraped yet"
    if sample.error:
        return f"{target.kind} pod {target.pod}: {sample.error}"
    if now - sample.at > max_age:
        return f"{target.kind} pod {target.pod}: last scrape {now - sample.at:.0f} s ago"
    if sample.value is None:
        return f"{target.kind} pod {target.pod}: no {target.metric} in its /metrics"
    return ""


def service_queue(
    targets: Sequence[Target],
    samples: Mapping[str, Sample],
    now: float,
    max_age: float,
    router_expected: bool,
) -> Reading:
    """The queue of one service from its targets' latest samples (keyed by target URL).

    Missing when any target is stale, failed or lacks the gauge, and when the router is expected
    but no router pod is ready (nothing would count the requests it holds).
    """
    missing = [p for t in targets if (p := _problem(t, samples.get(t.url), now, max_age))]
    if router_expected and not any(t.kind == "router" for t in targets):
        missing.append("no ready router pod")
    if missing:
        return Reading(None, now, tuple(missing), len(targets))
    fresh = [samples[t.url] for t in targets]
    oldest = min((s.at for s in fresh), default=now)
    active = sum(s.active for s in fresh)
    return Reading(sum(s.value or 0.0 for s in fresh), oldest, (), len(targets), active)


def parse_sample(target: Target, text: str, at: float) -> Sample:
    """The sample of ``target`` from its ``/metrics`` text."""
    active = parse_gauge(text, target.active_metric) or 0.0
    return Sample(at, parse_gauge(text, target.metric), active)


def quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, else thousandths (``1500m``)."""
    if value == int(value):
        return str(int(value))
    return f"{round(value * 1000)}m"

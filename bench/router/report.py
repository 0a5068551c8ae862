"""Summaries and tables for the router benchmark (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadgen import Result


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) with linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Figures of one (target, load) run; times in milliseconds."""

    target: str
    sent: int
    errors: int
    ttft: tuple[float, float, float]
    e2e: tuple[float, float, float]
    throughput: float
    hit_rate: float | None = None
    cpu_ms: float | None = None


def summarize(
    target: str,
    results: Sequence[Result],
    wall: float,
    hit_rate: float | None = None,
    cpu_s: float | None = None,
) -> Summary:
    """p50/p95/p99 of TTFT and e2e over successful requests, plus errors and throughput."""
    ok = [r for r in results if r.ok]

    def triple(values: list[float]) -> tuple[float, float, float]:
        return (percentile(values, 50), percentile(values, 95), percentile(values, 99))

    return Summary(
        target=target,
        sent=len(results),
        errors=len(results) - len(ok),
        ttft=triple([r.ttft * 1000 for r in ok]),
        e2e=triple([r.e2e * 1000 for r in ok]),
        throughput=len(ok) / wall if wall > 0 else 0.0,
        hit_rate=hit_rate,
        cpu_ms=1000 * cpu_s / len(results) if cpu_s is not None and results else None,
    )


def _ms(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:7.1f}" for v in values)


def table(rows: Sequence[Summary], baseline: str, extra: str) -> str:
    """A markdown table; ``extra`` is 'added' (latency over the baseline) or 'ratio'."""
    base = next((r for r in rows if r.target == baseline), None)
    head = "| target | sent | errors | TTFT p50 / p95 / p99 ms | e2e p50 / p95 / p99 ms | req/s |"
    if extra == "added":
        head += " added TTFT p50 / p99 ms | added e2e p50 / p99 ms | proxy CPU ms/req |"
    else:
        head += " prefix hit % | TTFT p99 / baseline | e2e p99 / baseline |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        line = f"| {row.target} | {row.sent} | {row.errors} | {_ms(row.ttft)} | {_ms(row.e2e)} |"
        line += f" {row.throughput:6.1f} |"
        if extra == "added" and base:
            line += f" {row.ttft[0] - base.ttft[0]:6.2f} / {row.ttft[2] - base.ttft[2]:6.2f} |"
            line += f" {row.e2e[0] - base.e2e[0]:6.2f} / {row.e2e[2] - base.e2e[2]:6.2f} |"
            line += f" {row.cpu_ms:5.2f} |" if row.cpu_ms is not None else "   -   |"
        elif extra == "ratio":
            hit = f"{100 * row.hit_rate:5.1f}" if row.hit_rate is not None else "  -  "
            ratio_t = row.ttft[2] / base.ttft[2] if base else float("nan")
            ratio_e = row.e2e[2] / base.e2e[2] if base else float("nan")
            line += f" {hit} | {ratio_t:5.2f} | {ratio_e:5.2f} |"
        lines.append(line)
    return "\n".join(lines)

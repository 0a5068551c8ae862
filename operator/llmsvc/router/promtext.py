"""A bounded, incremental reader of an engine's Prometheus text exposition (pure, no I/O).

Only three vLLM gauges matter to the router: ``vllm:num_requests_running``,
``vllm:num_requests_waiting`` and ``vllm:kv_cache_usage_perc``. Real vLLM labels each series
``{engine, model_name}`` (one series per data-parallel engine), so running and waiting are
summed over series and the KV-cache usage is their maximum. Every other line is skipped
without being parsed. The body is fed in chunks of any size; beyond the chunk at hand memory
stays bounded by ``max_line`` whatever the engine sends, and any malformed line of a wanted
metric, a value that is not a plausible count, too many series or a missing metric is a
``MetricsError`` (its message names the metric and the problem, never quotes the body).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

RUNNING = b"vllm:num_requests_running"
WAITING = b"vllm:num_requests_waiting"
KV_USAGE = b"vllm:kv_cache_usage_perc"
# a wanted series: its name at a line start, then its labels or a blank, to the line end
SERIES = re.compile(
    rb"^(vllm:num_requests_running|vllm:num_requests_waiting|vllm:kv_cache_usage_perc)"
    rb"((?:[{ \t][^\n]*+)?)$",
    re.MULTILINE,
)
# possessive quantifiers: linear time on any input, even an unclosed 64 KiB label set
LABEL_SET = re.compile(rb'\{(?:[^"}]++|"(?:[^"\\]++|\\.)*+")*+\}', re.DOTALL)
MAX_COUNT = 1e9  # more requests than any engine holds: a broken or hostile exporter


class MetricsError(ValueError):
    """The body is not a usable exposition of the engine's load."""


@dataclass(frozen=True)
class EngineLoad:
    """What an engine reported: requests running and waiting, KV cache usage (0..1)."""

    running: int
    waiting: int
    kv_usage: float

    @property
    def requests(self) -> int:
        """Requests the engine holds (running or waiting)."""
        return self.running + self.waiting


class LoadParser:
    """Feed the body with ``feed``; ``result`` gives the ``EngineLoad`` or raises.

    Each chunk's complete lines are searched for the wanted series at C speed (a regex over
    the whole region, not a Python loop over lines); at most ``max_series`` of them are
    parsed, so a hostile body costs time linear in its size and little more.
    """

    def __init__(self, max_line: int = 65536, max_series: int = 4096) -> None:
        self.max_line = max_line
        self.max_series = max_series
        self._pieces: list[bytes] = []
        self._size = 0
        self._series = 0
        self._sums: dict[bytes, float] = {}

    def feed(self, chunk: bytes) -> None:
        """Parse the complete lines in ``chunk`` (the rest waits for the next chunk)."""
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._keep(chunk)
            return
        region = b"".join([*self._pieces, chunk[:cut]])
        self._pieces, self._size = [], 0
        for match in SERIES.finditer(region):
            self._take(match.group(1), match.group(2))
        self._keep(chunk[cut + 1 :])

    def _keep(self, piece: bytes) -> None:
        """Hold ``piece`` of the unfinished last line; it may not outgrow ``max_line``."""
        self._size += len(piece)
        if self._size > self.max_line:
            raise MetricsError(f"a line is over {self.max_line} bytes")
        if piece:
            self._pieces.append(piece)

    def result(self) -> EngineLoad:
        """The load read from the whole body."""
        if self._pieces:
            self.feed(b"\n")
        for name in (RUNNING, WAITING):
            if name not in self._sums:
                raise MetricsError(f"no {name.decode()} in the exposition")
        return EngineLoad(
            running=int(self._sums[RUNNING]),
            waiting=int(self._sums[WAITING]),
            kv_usage=min(1.0, self._sums.get(KV_USAGE, 0.0)),
        )

    def _take(self, name: bytes, rest: bytes) -> None:
        self._series += 1
        if self._series > self.max_series:
            raise MetricsError(f"over {self.max_series} series of the load gauges")
        value = parse_value(after_labels(rest, name), name)
        previous = self._sums.get(name, 0.0)
        self._sums[name] = max(previous, value) if name == KV_USAGE else previous + value


def parse_value(text: bytes, name: bytes) -> float:
    """The sample value of a ``name`` line (``text``: what follows its labels)."""
    fields = text.split()
    if not 1 <= len(fields) <= 2:
        raise MetricsError(f"{name.decode()}: expected a value and an optional timestamp")
    try:
        value = float(fields[0])
    except ValueError:
        raise MetricsError(f"{name.decode()}: the value is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_COUNT:
        raise MetricsError(f"{name.decode()}: the value is not a plausible load")
    return value


def after_labels(rest: bytes, name: bytes) -> bytes:
    """What follows the ``{...}`` label set at the start of ``rest`` (or ``rest`` itself)."""
    if not rest.startswith(b"{"):
        return rest
    match = LABEL_SET.match(rest)
    if match is None:
        raise MetricsError(f"{name.decode()}: the label set is not closed")
    return rest[match.end() :]

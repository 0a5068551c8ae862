"""Pull progress for Prometheus while the init container runs (``llmsvc pull --metrics-port``).

The gauges are read from the live :class:`~llmsvc.puller.progress.Progress` at scrape time, so
the endpoint costs nothing between scrapes. They carry no labels: the model URI may hold a
user name or a presigned query, and Prometheus adds the pod's own labels (namespace, pod,
``llmservice``, ``group``) when it scrapes. Until the file list is known every value is 0.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmsvc.puller.progress import Progress

GAUGES = (
    ("llmsvc_pull_expected_bytes", "Bytes this pull must download (what the cache lacks)."),
    ("llmsvc_pull_downloaded_bytes", "Bytes downloaded so far by this pull."),
    ("llmsvc_pull_expected_files", "Files this pull must download."),
    ("llmsvc_pull_downloaded_files", "Files downloaded and verified so far."),
)


class PullProgress(Collector):
    """A collector over the transfer's current :class:`Progress` (set by :meth:`track`)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._lock = threading.Lock()

    def track(self, progress: Progress) -> None:
        """Report ``progress`` from now on (a transfer calls this when it knows its files)."""
        with self._lock:
            self._progress = progress

    def values(self) -> tuple[int, int, int, int]:
        """(expected bytes, downloaded bytes, expected files, downloaded files)."""
        with self._lock:
            p = self._progress
        if p is None:
            return 0, 0, 0, 0
        return p.total, max(p.done, 0), p.files, p.files_done

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for (name, doc), value in zip(GAUGES, self.values(), strict=True):
            yield GaugeMetricFamily(name, doc, value=value)


def serve(port: int, addr: str = "0.0.0.0") -> PullProgress:
    """Serve ``/metrics`` on ``port`` in a daemon thread; returns the collector to feed."""
    collector = PullProgress()
    registry = CollectorRegistry()
    registry.register(collector)
    start_http_server(port, addr=addr, registry=registry)
    return collector

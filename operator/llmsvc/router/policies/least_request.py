"""Least request: the eligible endpoint with the least load (``Endpoint.load``)."""

from __future__ import annotations

from llmsvc.router.policies.base import Endpoint, RequestInfo, Snapshot, least_loaded


class LeastRequest:
    """Least load wins, then the emptier KV cache; ties rotate so idle backends share evenly."""

    name = "least-request"

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, snapshot: Snapshot, request: RequestInfo) -> Endpoint | None:
        """The least loaded eligible endpoint."""
        candidates = snapshot.eligible()
        if not candidates:
            return None
        self._turn += 1
        return least_loaded(candidates, self._turn)

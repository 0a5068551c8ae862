"""Round robin over the eligible endpoints."""

from __future__ import annotations

from llmsvc.router.policies.base import Endpoint, RequestInfo, Snapshot


class RoundRobin:
    """Each request goes to the next eligible endpoint in URL order."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, snapshot: Snapshot, request: RequestInfo) -> Endpoint | None:
        """The next eligible endpoint, cycling."""
        candidates = snapshot.eligible()
        if not candidates:
            return None
        chosen = candidates[self._next % len(candidates)]
        self._next += 1
        return chosen

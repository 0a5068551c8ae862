"""Session affinity: a session key mapped onto backends by a consistent-hash ring.

The ring holds ``vnodes`` points per backend, hashed with a process-independent hash so that
every router replica maps a session to the same backend. When the mapped backend is not
eligible (unhealthy, ejected or full) the walk continues clockwise, so only that backend's
sessions move. Requests without a key fall back to least request.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from llmsvc.router.policies.base import Endpoint, RequestInfo, Snapshot, stable_hash
from llmsvc.router.policies.least_request import LeastRequest


class Ring:
    """A consistent-hash ring over a fixed set of URLs."""

    def __init__(self, urls: frozenset[str], vnodes: int) -> None:
        points = sorted((stable_hash(url, str(i)), url) for url in urls for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._urls = [u for _, u in points]
        self.urls = urls

    def walk(self, key: str) -> Iterator[str]:
        """Distinct URLs in ring order starting at ``key``'s position (lazily)."""
        if not self._urls:
            return
        start = bisect.bisect(self._hashes, stable_hash(key))
        seen: set[str] = set()
        for i in range(len(self._urls)):
            url = self._urls[(start + i) % len(self._urls)]
            if url not in seen:
                seen.add(url)
                yield url
                if len(seen) == len(self.urls):
                    return


class SessionAffinity:
    """Consistent hashing on the session key, falling back along the ring."""

    name = "session"

    def __init__(self, vnodes: int = 160) -> None:
        self._vnodes = vnodes
        self._ring = Ring(frozenset(), vnodes)
        self._fallback = LeastRequest()

    def pick(self, snapshot: Snapshot, request: RequestInfo) -> Endpoint | None:
        """The session's backend, or the next eligible one on the ring."""
        if request.session is None:
            return self._fallback.pick(snapshot, request)
        by_url = {e.url: e for e in snapshot.endpoints}
        if self._ring.urls != by_url.keys():
            self._ring = Ring(frozenset(by_url), self._vnodes)
        for url in self._ring.walk(request.session):
            if by_url[url].eligible:
                return by_url[url]
        return None

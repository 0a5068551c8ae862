"""The vocabulary every policy shares: endpoint snapshots, request facts, the Policy protocol."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

KV_STEP = 0.05  # KV-cache usages this close count as equal (ties then rotate)


@dataclass(frozen=True)
class Endpoint:
    """One backend as the policy sees it at this instant.

    ``in_flight`` is this router's own count. ``engine_load`` is the engine's requests
    (running + waiting, as last scraped, every router's) corrected by this router's changes
    since; ``None`` when no fresh scrape exists. ``load`` is what the policies balance on.
    """

    url: str
    in_flight: int = 0
    eligible: bool = True
    engine_load: int | None = None
    kv_usage: float = 0.0

    @property
    def load(self) -> int:
        """The engine's load when known, never below this router's own in-flight count."""
        return self.in_flight if self.engine_load is None else max(self.in_flight, self.engine_load)


@dataclass(frozen=True)
class Snapshot:
    """All known backends, in a stable (sorted) order; ``eligible`` marks the usable ones."""

    endpoints: tuple[Endpoint, ...]

    @staticmethod
    def of(endpoints: Sequence[Endpoint]) -> Snapshot:
        """A snapshot with endpoints sorted by URL."""
        return Snapshot(tuple(sorted(endpoints, key=lambda e: e.url)))

    def eligible(self) -> tuple[Endpoint, ...]:
        """The endpoints a request may go to now."""
        return tuple(e for e in self.endpoints if e.eligible)


@dataclass(frozen=True)
class RequestInfo:
    """What a policy may know about a request: its prompt text and session key (never logged)."""

    prompt: str = ""
    session: str | None = None
    model: str | None = None


class Policy(Protocol):
    """Picks an eligible endpoint, or ``None`` when none is eligible."""

    name: str

    def pick(self, snapshot: Snapshot, request: RequestInfo) -> Endpoint | None: ...


def stable_hash(*parts: str | bytes) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part.encode(errors="surrogatepass") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "big")


def least_loaded(candidates: Sequence[Endpoint], tiebreak: int) -> Endpoint:
    """The least loaded candidate, then the emptiest KV cache; ties rotate with ``tiebreak``."""
    low = min(_pressure(e) for e in candidates)
    tied = [e for e in candidates if _pressure(e) == low]
    return tied[tiebreak % len(tied)]


def _pressure(endpoint: Endpoint) -> tuple[int, int]:
    return endpoint.load, round(endpoint.kv_usage / KV_STEP)

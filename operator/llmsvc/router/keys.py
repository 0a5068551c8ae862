"""API keys: a fixed set, or a file re-read while the router runs (rotation without restart).

In Kubernetes the file is a key of a Secret mounted as a volume (never with ``subPath``, which
freezes it); the kubelet swaps the file when the Secret changes, and the router notices within
``key_reload_seconds``. A file that cannot be read or holds no key keeps the previous keys (a
half-written rotation must not lock everyone out, nor open the door) and logs a warning. Keys
are never logged, only their number.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path

log = logging.getLogger("llmsvc.router.keys")


def parse_keys(text: str) -> frozenset[str]:
    """One key per line; blank lines and ``#`` comments are skipped."""
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


class KeyRing:
    """The keys in force now; ``check`` compares in constant time."""

    def __init__(self, keys: frozenset[str] = frozenset(), path: Path | None = None) -> None:
        self.keys = keys
        self.path = path
        self._text: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests need a key."""
        return bool(self.keys) or self.path is not None

    def check(self, given: str) -> bool:
        """Whether ``given`` is one of the keys."""
        return any(hmac.compare_digest(given.encode(), key.encode()) for key in self.keys)

    def reload(self) -> None:
        """Re-read the file when its content changed."""
        if self.path is None:
            return
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the API key file (%s); keeping the current keys", exc)
            return
        if text == self._text:
            return
        keys = parse_keys(text)
        if not keys:
            log.warning("the API key file holds no key; keeping the current keys")
            return
        self._text, self.keys = text, keys
        log.info("API keys loaded: %d", len(keys))

    async def watch(self, interval: float) -> None:
        """Reload every ``interval`` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            self.reload()

"""Sources: each lists the files of a model and opens byte ranges of them.

A source raises :mod:`llmsvc.puller.errors` failures for what the user must fix and
``TransientError`` for what is worth retrying; the transfer engine owns retries and resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llmsvc.puller.manifest import Checksum, RemoteFile


@dataclass(frozen=True)
class Listing:
    """The files to fetch and what the request resolved to (a commit, a bucket listing, ...)."""

    files: list[RemoteFile]
    resolved: str


class Stream(Protocol):
    """An open byte range: ``readinto(buf)`` fills up to ``len(buf)`` bytes, 0 at the end."""

    def readinto(self, buf: memoryview) -> int: ...

    def close(self) -> None: ...


class Source(Protocol):
    """What the transfer engine needs from a source."""

    def listing(self) -> Listing: ...

    def open(self, f: RemoteFile, start: int, end: int) -> Stream:
        """Bytes ``[start, end)`` of ``f``."""
        ...

    def expected(self, f: RemoteFile) -> Checksum | None:
        """The checksum to verify ``f`` against once fetched (None: size only)."""
        ...

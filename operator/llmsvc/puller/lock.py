"""An exclusive lock on a model directory, safe across processes, pods and NFS clients.

POSIX record locks (``fcntl.lockf``) are released by the kernel when the holder dies, so a
crashed pull never leaves a stale lock, and NFSv4 forwards them to the server, so ranks on other
nodes sharing a ReadWriteMany claim see them too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger("llmsvc.pull")


class DirLock:
    """``with DirLock(path):`` waits (logging who holds it) until this process holds the lock."""

    def __init__(self, path: Path, poll: float = 0.1, report_every: float = 30.0) -> None:
        self.path, self.poll, self.report_every = path, poll, report_every
        self.fd = -1

    def __enter__(self) -> DirLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        started = next_report = time.monotonic()
        while not self._try():
            now = time.monotonic()
            if now >= next_report:
                log.info(
                    "waiting for %s to finish pulling (%.0fs so far)", self._holder(), now - started
                )
                next_report = now + self.report_every
            time.sleep(self.poll)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        return self

    def _try(self) -> bool:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _holder(self) -> str:
        try:
            return os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another pull"
        except OSError:
            return "another pull"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1

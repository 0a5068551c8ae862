"""Progress for ``kubectl logs``: bytes done, rate and ETA every few seconds (pure formatting)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n: float) -> str:
    """Bytes in binary units: ``1.50 GiB``."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def progress_line(done: int, total: int, elapsed: float, files_done: int, files: int) -> str:
    """One log line: ``1.00 GiB / 2.00 GiB (50.0%), 3/9 files, 512.00 MiB/s, ETA 2s``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    pct = 100.0 * done / total if total else 100.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "unknown"
    return (
        f"progress {human(done)} / {human(total)} ({pct:.1f}%), {files_done}/{files} files, "
        f"{human(rate)}/s, ETA {eta}"
    )


class Progress:
    """Thread-safe byte and file counters for one transfer."""

    def __init__(self, total: int, files: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.files = total, files
        self.done = 0
        self.files_done = 0
        self._clock = clock
        self.started = clock()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n

    def file_finished(self) -> None:
        with self._lock:
            self.files_done += 1

    def elapsed(self) -> float:
        return self._clock() - self.started

    def line(self) -> str:
        return progress_line(self.done, self.total, self.elapsed(), self.files_done, self.files)

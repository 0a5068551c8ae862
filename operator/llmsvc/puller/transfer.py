"""The transfer engine: parallel ranged downloads into temporary files, resumable, verified.

Every file is fetched into ``.llmsvc-tmp/<path>`` as parts of ``part_size`` bytes (one part
below ``threshold``), written in place with ``pwrite`` by a pool of threads. A small JSON state
next to it records how many bytes of each part are on disk, so a later run resumes where a
crashed one stopped, provided the source names the file's version (:mod:`llmsvc.puller.parts`);
a file without one is fetched in one stream from its first byte. A finished file is checked
(size, checksum when known), fsynced and renamed into place; a checksum mismatch fetches it once
more before giving up.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from llmsvc.puller.errors import (
    NetworkError,
    OutOfSpaceError,
    PullError,
    TransientError,
    VerifyError,
)
from llmsvc.puller.manifest import TMP_DIR, RemoteFile, fsync_dir, matches, new_digest
from llmsvc.puller.parts import FileJob, Part, contiguous, identified, open_job
from llmsvc.puller.progress import Progress, human
from llmsvc.puller.sources import Source

log = logging.getLogger("llmsvc.pull")
_READ = 1 << 20
_SPACE_MARGIN = 16 << 20
_HASH_CHUNK = 8 << 20
T = TypeVar("T")


def free_bytes(path: Path) -> int:
    """Bytes available to this user on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass
class Options:
    """Tuning and injected effects (free-space probe, sleep) of one transfer."""

    concurrency: int = 8
    part_size: int = 32 << 20
    threshold: int = 64 << 20
    retries: int = 8
    backoff: float = 0.5
    backoff_max: float = 20.0
    progress_interval: float = 5.0
    fsync: bool = True
    checksums: bool = True
    free_space: Callable[[Path], int] = free_bytes
    sleep: Callable[[float], None] = time.sleep
    track: Callable[[Progress], None] = lambda _: None  # e.g. the metrics endpoint's collector


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff: ``base * 2**(attempt-1)`` capped at ``cap``."""
    return float(min(cap, base * (2 ** (attempt - 1))))


def with_retries(what: str, fn: Callable[[], T], opts: Options) -> T:
    """Run ``fn``, retrying :class:`TransientError` with backoff; then :class:`NetworkError`."""
    for attempt in range(1, opts.retries + 2):
        try:
            return fn()
        except TransientError as exc:
            if attempt > opts.retries:
                raise NetworkError(f"{what}: gave up after {opts.retries} retries: {exc}") from exc
            delay = backoff_delay(attempt, opts.backoff, opts.backoff_max)
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, opts.retries, delay
            )
            opts.sleep(delay)
    raise AssertionError("unreachable")


class Transfer:
    """Fetch a list of files from one source into ``model_dir``."""

    def __init__(self, source: Source, model_dir: Path, opts: Options) -> None:
        self.source, self.model_dir, self.opts = source, model_dir, opts
        self.cancel = threading.Event()
        self.jobs: list[FileJob] = []
        self.progress = Progress(0, 0)

    def run(self, files: list[RemoteFile]) -> None:
        (self.model_dir / TMP_DIR).mkdir(parents=True, exist_ok=True)
        opts = self.opts
        self.jobs = [open_job(f, self.model_dir, opts.part_size, opts.threshold) for f in files]
        need = sum(j.missing() for j in self.jobs)
        self._check_space(need)
        self.progress = Progress(need, len(self.jobs))
        opts.track(self.progress)
        log.info("fetching %d files, %s", len(self.jobs), human(need))
        reporter = threading.Thread(target=self._report, daemon=True)
        reporter.start()
        try:
            self._run_parts()
        finally:
            self.cancel.set()
            reporter.join()
            self._close_and_save()
        log.info("fetched %s in %.1fs", human(self.progress.done), self.progress.elapsed())

    def _check_space(self, need: int) -> None:
        free = self.opts.free_space(self.model_dir)
        if need + _SPACE_MARGIN > free:
            raise OutOfSpaceError(
                f"{self.model_dir} needs {human(need)} more but its volume has {human(free)} "
                "free; give the cache volume more space (or free some) and retry"
            )

    def _run_parts(self) -> None:
        tasks = interleave(
            [[(j, p) for p in j.parts if p.done < p.end - p.start] for j in self.jobs]
        )
        for j in self.jobs:
            j.tmp.parent.mkdir(parents=True, exist_ok=True)
            j.fd = os.open(j.tmp, os.O_RDWR | os.O_CREAT, 0o644)
            os.ftruncate(j.fd, j.remote.size)
            j.remaining = sum(1 for p in j.parts if p.done < p.end - p.start)
            expected = self.source.expected(j.remote) if self.opts.checksums else None
            j.digest = None if expected is None else new_digest(expected, j.remote.size)
        for j in [j for j in self.jobs if j.remaining == 0]:
            self._finish(j)
        with ThreadPoolExecutor(max(1, self.opts.concurrency), "llmsvc-pull") as pool:
            futures: list[Future[None]] = [pool.submit(self._part, j, p) for j, p in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            error = next((e for f in done if (e := f.exception()) is not None), None)
            if error is not None:
                self.cancel.set()
                for f in futures:
                    f.cancel()
                raise error

    def _part(self, job: FileJob, part: Part) -> None:
        what = f"fetching {job.remote.path} bytes {part.start + part.done}-{part.end}"
        with_retries(what, lambda: self._attempt(job, part), self.opts)
        self._advance_hash(job, block=False)
        with job.lock:
            job.remaining -= 1
            last = job.remaining == 0
        if last:
            self._finish(job)

    def _attempt(self, job: FileJob, part: Part) -> None:
        """One try at a part. A file whose version the source does not name starts over: the
        bytes already written may be from a version that changed since (it is one part, and has
        no checksum, so nothing else depends on them)."""
        if part.done and not identified(job.remote):
            log.info("restarting %s from its first byte (no validator to resume)", job.remote.path)
            self.progress.add(-part.done)
            part.done = 0
        self._stream(job, part)

    def _stream(self, job: FileJob, part: Part) -> None:
        if self.cancel.is_set():
            raise PullError("cancelled")
        stream = self.source.open(job.remote, part.start + part.done, part.end)
        since_hash, buf = 0, _buffer()
        try:
            while part.done < part.end - part.start and not self.cancel.is_set():
                want = min(len(buf), part.end - part.start - part.done)
                n = stream.readinto(buf[:want])
                if not n:
                    raise TransientError("connection ended before the range was complete")
                offset = part.start + part.done
                _pwrite(job.fd, buf[:n], offset)
                part.done += n
                self.progress.add(n)
                since_hash += n
                if job.digest is not None and job.hashed == offset:  # at the hash frontier
                    self._hash_inline(job, buf[:n], offset)
                elif since_hash >= _HASH_CHUNK:
                    since_hash = 0
                    self._advance_hash(job, block=False)
        finally:
            stream.close()
        if self.cancel.is_set():
            raise PullError("cancelled")

    def _advance_hash(self, job: FileJob, block: bool) -> None:
        """Feed the file's digest with the bytes now contiguous on disk (reads the page cache).

        Hashing follows the download instead of re-reading the whole file at the end.
        """
        if job.digest is None or not job.hash_lock.acquire(blocking=block):
            return
        try:
            frontier = contiguous(job.parts, job.remote.size)
            hbuf = _buffer("hash", _HASH_CHUNK)
            while job.hashed < frontier:
                n = os.preadv(job.fd, [hbuf[: min(len(hbuf), frontier - job.hashed)]], job.hashed)
                if n <= 0:
                    raise PullError(f"{job.tmp} is shorter than what was written to it")
                job.digest.update(hbuf[:n])
                job.hashed += n
        finally:
            job.hash_lock.release()

    @staticmethod
    def _hash_inline(job: FileJob, data: memoryview, offset: int) -> None:
        """Hash bytes just written when they extend the hashed prefix: no read-back needed."""
        if job.digest is None or not job.hash_lock.acquire(blocking=False):
            return
        try:
            if job.hashed == offset:
                job.digest.update(data)
                job.hashed += len(data)
        finally:
            job.hash_lock.release()

    def _verified(self, job: FileJob) -> bool:
        if not self.opts.checksums or self.source.expected(job.remote) is None:
            return True
        self._advance_hash(job, block=True)
        return job.digest is None or job.digest.ok()

    def _finish(self, job: FileJob) -> None:
        if self.opts.fsync:
            os.fsync(job.fd)
        if not self._verified(job):
            self._refetch(job)
        job.final.parent.mkdir(parents=True, exist_ok=True)
        job.finished = True
        job.tmp.replace(job.final)
        job.state_path.unlink(missing_ok=True)
        if self.opts.fsync:
            fsync_dir(job.final.parent)
        self.progress.file_finished()

    def _refetch(self, job: FileJob) -> None:
        """A checksum mismatch after download: fetch the whole file once more, in one stream."""
        log.warning("%s does not match its checksum; fetching it again", job.remote.path)
        job.parts = [Part(0, job.remote.size)]
        job.digest = None
        self._part_again(job)
        c = self.source.expected(job.remote)
        if not matches(job.tmp, c, job.remote.size):
            raise VerifyError(
                f"{job.remote.path} still does not match its {c.algo if c else 'size'} after "
                "fetching it twice: the source serves different bytes than it advertises"
            )

    def _part_again(self, job: FileJob) -> None:
        part = job.parts[0]
        with_retries(f"refetching {job.remote.path}", lambda: self._stream(job, part), self.opts)
        if self.opts.fsync:
            os.fsync(job.fd)

    def _report(self) -> None:
        last = time.monotonic()
        while not self.cancel.wait(min(1.0, self.opts.progress_interval)):
            self._save_states()
            if time.monotonic() - last >= self.opts.progress_interval:
                last = time.monotonic()
                log.info("%s", self.progress.line())

    def _save_states(self) -> None:
        for j in self.jobs:
            missing = j.missing()
            if j.fd >= 0 and not j.finished and missing != j.saved_missing:
                j.saved_missing = missing
                try:
                    j.save_state()
                except OSError as exc:
                    log.debug("cannot save state of %s: %s", j.remote.path, exc)

    def _close_and_save(self) -> None:
        self._save_states()
        for j in self.jobs:
            if j.fd >= 0:
                os.close(j.fd)
                j.fd = -1


_local = threading.local()


def _buffer(name: str = "read", size: int = _READ) -> memoryview:
    """This thread's buffer ``name``, reused: fresh large buffers cost page faults per byte."""
    bufs: dict[str, memoryview] = _local.__dict__.setdefault("bufs", {})
    if name not in bufs:
        bufs[name] = memoryview(bytearray(size))
    return bufs[name]


def interleave(lists: list[list[T]]) -> list[T]:
    """Round-robin over ``lists``: workers spread over files instead of crowding one file
    (concurrent writers to one inode contend for its lock), each file still in order."""
    out: list[T] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfSpaceError(
                    f"the cache volume ran out of space while writing: {exc.strerror}; "
                    "give it more space and retry (the partial download is kept)"
                ) from exc
            raise
        view, offset = view[n:], offset + n


def clean_tmp(model_dir: Path) -> None:
    """Remove the temporary directory once every file is in place."""
    shutil.rmtree(model_dir / TMP_DIR, ignore_errors=True)

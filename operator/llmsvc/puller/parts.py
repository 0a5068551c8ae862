"""Partial files: the byte ranges of a file, their progress on disk, and when to resume them.

A file being fetched lives in ``.llmsvc-tmp/<path>`` with a JSON state next to it (size, checksum,
validator, and how many bytes of each part are on disk). A later run resumes from that state
only if the source names the file's version (:func:`identified`) and the version still matches;
otherwise the file is fetched again from its first byte.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from llmsvc.puller.manifest import TMP_DIR, Digest, RemoteFile
from llmsvc.puller.progress import human

log = logging.getLogger("llmsvc.pull")


def plan_parts(size: int, ranges: bool, part_size: int, threshold: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``size`` bytes: one part unless ranged and large."""
    if not ranges or size <= threshold or part_size <= 0:
        return [(0, size)]
    return [(s, min(s + part_size, size)) for s in range(0, size, part_size)]


@dataclass
class Part:
    """A byte range of a file and how much of it is on disk."""

    start: int
    end: int
    done: int = 0


@dataclass
class FileJob:
    """One file being fetched: its temporary data file, state file and parts."""

    remote: RemoteFile
    tmp: Path
    final: Path
    parts: list[Part]
    fd: int = -1
    remaining: int = 0
    finished: bool = False
    saved_missing: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)
    digest: Digest | None = None
    hashed: int = 0
    hash_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state_path(self) -> Path:
        return self.tmp.with_name(self.tmp.name + ".state.json")

    def state(self) -> dict[str, object]:
        c = self.remote.checksum
        return {
            "size": self.remote.size,
            "checksum": None if c is None else [c.algo, c.value],
            "validator": self.remote.extra.get("validator", ""),
            "parts": [[p.start, p.end, p.done] for p in self.parts],
        }

    def save_state(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(self.state()))
        tmp.replace(self.state_path)

    def missing(self) -> int:
        return sum(p.end - p.start - p.done for p in self.parts)


def open_job(f: RemoteFile, model_dir: Path, part_size: int, threshold: int) -> FileJob:
    """A job for ``f``, resuming a previous run's parts when its state still matches."""
    tmp = model_dir / TMP_DIR / f.path
    # Parallel ranges of one file are only consistent if the source names its version.
    ranges = plan_parts(f.size, f.ranges and identified(f), part_size, threshold)
    job = FileJob(f, tmp, model_dir / f.path, [Part(s, e) for s, e in ranges])
    old = _load_state(job)
    if old is not None:
        job.parts = old
        log.info("resuming %s: %s already on disk", f.path, human(f.size - job.missing()))
    return job


def identified(f: RemoteFile) -> bool:
    """Whether the source names the version of ``f`` (a validator such as an ETag, or a checksum).

    Only then may a partial file be resumed: the state records the identity, and a changed file
    no longer matches it. Without one, bytes on disk may belong to an older version of the file,
    and appending the new version's tail would build a file that never existed: start over.
    """
    return bool(f.extra.get("validator")) or f.checksum is not None


def _load_state(job: FileJob) -> list[Part] | None:
    if not identified(job.remote):
        if job.state_path.exists():
            log.info(
                "not resuming %s: the source sends no ETag, Last-Modified or checksum "
                "to tell whether it changed; fetching it again",
                job.remote.path,
            )
        return None
    try:
        doc = json.loads(job.state_path.read_text())
        if job.tmp.stat().st_size != job.remote.size:
            return None
        fresh = job.state()
        if any(doc.get(k) != fresh[k] for k in ("size", "checksum", "validator")):
            return None
        return [Part(int(s), int(e), int(d)) for s, e, d in doc["parts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def contiguous(parts: list[Part], size: int) -> int:
    """How many bytes from the start of the file are on disk (parts are in offset order)."""
    for p in parts:
        if p.done < p.end - p.start:
            return p.start + p.done
    return size

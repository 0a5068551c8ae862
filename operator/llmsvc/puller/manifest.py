"""Remote file descriptions, checksums, and the completion marker that makes a cache trusted.

The marker ``.llmsvc-complete.json`` is written last (atomically) in the model directory and
holds the manifest: every file with its size and, when the source provides one, its checksum
(``sha256`` for hub LFS files, ``git-sha1`` for small hub files, ``md5`` / ``s3-etag`` for S3).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = ".llmsvc-complete.json"
TMP_DIR = ".llmsvc-tmp"
LOCK = ".llmsvc.lock"
_CHUNK = 4 << 20
_MiB = 1 << 20
_COMMON_PART_MIB = (5, 8, 16, 32, 64, 100, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algo`` is sha256, md5, git-sha1 or s3-etag (multipart ETag)."""

    algo: str
    value: str


@dataclass(frozen=True)
class RemoteFile:
    """One file to have in the model directory; ``key`` is what the source needs to fetch it."""

    path: str
    size: int
    checksum: Checksum | None = None
    key: str = ""
    ranges: bool = True
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


class Digest:
    """An incremental check of one checksum: ``update`` with the bytes in order, then ``ok``."""

    def __init__(self, checksum: Checksum, size: int) -> None:
        self.expected = checksum.value
        self._hash = hashlib.new("sha1" if checksum.algo == "git-sha1" else checksum.algo)
        if checksum.algo == "git-sha1":
            self._hash.update(f"blob {size}\0".encode())

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def ok(self) -> bool:
        return self._hash.hexdigest() == self.expected


class EtagDigest(Digest):
    """S3's multipart ETag (md5 of the part md5s, ``-N``) for each plausible part size."""

    def __init__(self, checksum: Checksum, size: int) -> None:
        self.expected = checksum.value
        parts = int(checksum.value.rsplit("-", 1)[1])
        self._sizes = etag_part_sizes(size, parts)
        self._current = [hashlib.md5() for _ in self._sizes]  # noqa: S324 (S3's definition)
        self._filled = [0 for _ in self._sizes]
        self._digests: list[list[bytes]] = [[] for _ in self._sizes]

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for i, part in enumerate(self._sizes):
            rest = view
            while rest:
                take = min(len(rest), part - self._filled[i])
                self._current[i].update(rest[:take])
                self._filled[i] += take
                rest = rest[take:]
                if self._filled[i] == part:
                    self._close(i)

    def _close(self, i: int) -> None:
        self._digests[i].append(self._current[i].digest())
        self._current[i] = hashlib.md5()  # noqa: S324
        self._filled[i] = 0

    def ok(self) -> bool:
        for i in range(len(self._sizes)):
            if self._filled[i]:
                self._close(i)
            joined = hashlib.md5(b"".join(self._digests[i])).hexdigest()  # noqa: S324
            if f"{joined}-{len(self._digests[i])}" == self.expected:
                return True
        return False


def new_digest(checksum: Checksum, size: int) -> Digest:
    """The incremental checker for ``checksum``."""
    return EtagDigest(checksum, size) if checksum.algo == "s3-etag" else Digest(checksum, size)


def etag_part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes an uploader may have used to produce ``parts`` parts for ``size`` bytes."""
    guess = -(-size // parts)
    guess_mib = -(-guess // _MiB) * _MiB
    candidates = [m * _MiB for m in _COMMON_PART_MIB] + [guess_mib, guess]
    fits = [p for p in dict.fromkeys(candidates) if p > 0 and -(-size // p) == parts]
    return fits[:3]


def matches(path: Path, checksum: Checksum | None, size: int) -> bool:
    """Whether ``path`` has ``size`` bytes and, when known, the expected checksum."""
    try:
        if path.stat().st_size != size:
            return False
        if checksum is None:
            return True
        digest = new_digest(checksum, size)
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return False
    return digest.ok()


@dataclass(frozen=True)
class Marker:
    """The completion marker: what was asked for, what it resolved to, and the files."""

    request: dict[str, Any]
    resolved: str
    files: list[RemoteFile]


def _file_to_json(f: RemoteFile) -> dict[str, Any]:
    out: dict[str, Any] = {"path": f.path, "size": f.size}
    if f.checksum is not None:
        out["checksum"] = {"algo": f.checksum.algo, "value": f.checksum.value}
    return out


def _file_from_json(d: dict[str, Any]) -> RemoteFile:
    c = d.get("checksum")
    checksum = Checksum(str(c["algo"]), str(c["value"])) if c else None
    return RemoteFile(path=str(d["path"]), size=int(d["size"]), checksum=checksum)


def write_marker(model_dir: Path, marker: Marker) -> None:
    """Write the marker atomically (temp name, fsync, rename, fsync the directory)."""
    doc = {
        "version": 1,
        "request": marker.request,
        "resolved": marker.resolved,
        "files": [_file_to_json(f) for f in marker.files],
    }
    tmp = model_dir / f"{MARKER}.tmp-{os.getpid()}"
    with tmp.open("w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(model_dir / MARKER)
    fsync_dir(model_dir)


def read_marker(model_dir: Path) -> Marker | None:
    """The marker, or None when absent or unreadable (an unreadable marker is not trusted)."""
    try:
        doc = json.loads((model_dir / MARKER).read_text())
        files = [_file_from_json(d) for d in doc["files"]]
        return Marker(request=dict(doc["request"]), resolved=str(doc["resolved"]), files=files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fsync_dir(path: Path) -> None:
    """Persist a rename in ``path`` (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

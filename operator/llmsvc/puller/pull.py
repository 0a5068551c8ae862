"""The cache protocol: trust a valid marker, else lock, fetch what is missing, write the marker.

1. Fast path, no lock and no network: the marker exists, was written for the same request, and
   every file has its recorded size (and checksum with ``verify``). Done.
2. Otherwise take the directory lock (other ranks wait here), look again (someone may have just
   finished), drop the marker, list the source, keep files already in place and intact, fetch the
   rest (resuming partial files), and write the marker last.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmsvc.puller import layout
from llmsvc.puller.errors import UsageError, VerifyError
from llmsvc.puller.local import verify_local
from llmsvc.puller.lock import DirLock
from llmsvc.puller.manifest import (
    LOCK,
    MARKER,
    Marker,
    RemoteFile,
    matches,
    read_marker,
    write_marker,
)
from llmsvc.puller.sources import Source
from llmsvc.puller.transfer import Options, Transfer, clean_tmp, with_retries

log = logging.getLogger("llmsvc.pull")


@dataclass(frozen=True)
class Request:
    """What to pull and where; ``files`` (https) and ``include`` (hf) refine the selection."""

    uri: str
    dest: Path
    revision: str | None = None
    files: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    verify: bool = False
    timeout: float = 30.0

    def key(self) -> dict[str, Any]:
        """What the marker must have been written for to be trusted."""
        return {
            "uri": self.uri.split("?", 1)[0],  # presigned URLs rotate their signatures
            "revision": self.revision,
            "files": list(self.files),
            "include": list(self.include),
        }


SourceFactory = Callable[[layout.ModelURI, Request, Options], Source]


@dataclass
class Check:
    """Result of inspecting a cache: trusted or not, files known good, marker identity."""

    ok: bool
    good: set[RemoteFile] = field(default_factory=set)
    stamp: tuple[int, int] | None = None


def inspect(model_dir: Path, req: Request, verify: bool, quiet: bool = False) -> Check:
    """Whether the marker in ``model_dir`` can be trusted for ``req``."""
    marker = read_marker(model_dir)
    if marker is None or marker.request != req.key():
        return Check(False)
    try:
        st = (model_dir / MARKER).stat()
    except OSError:  # removed meanwhile by a pull that refreshes the directory
        return Check(False)
    stamp = (st.st_ino, st.st_mtime_ns)
    good = set()
    for f in marker.files:
        if matches(model_dir / f.path, f.checksum if verify else None, f.size):
            good.add(f)
        elif not quiet:
            log.warning("%s is missing, truncated or corrupted; it will be fetched again", f.path)
    return Check(len(good) == len(marker.files), good, stamp)


def default_source(u: layout.ModelURI, req: Request, opts: Options) -> Source:
    """The source for a parsed URI (heavy client libraries are imported only here)."""
    if u.scheme == "s3":
        from llmsvc.puller.sources.s3 import S3Source

        return S3Source(u.host, u.path, opts.concurrency, req.timeout)
    if u.scheme in ("http", "https"):
        from llmsvc.puller.sources.http import HttpsSource

        return HttpsSource(u.raw, list(req.files), req.timeout)
    if u.scheme == "hf":
        from llmsvc.puller.sources.hf import HfSource

        repo = f"{u.host}/{u.path}" if u.path else u.host
        return HfSource(repo, req.revision, list(req.include), req.timeout)
    raise UsageError(f"{u.scheme}:// has no source in this build")  # layout.URI_FORMS drifted


def pull(req: Request, opts: Options, make_source: SourceFactory = default_source) -> Path:
    """Make the model of ``req`` complete under ``req.dest``; returns its directory."""
    try:
        u = layout.parse_uri(req.uri)
        model_dir = Path(layout.model_path(req.uri, req.revision, str(req.dest)))
    except layout.BadURIError as exc:
        raise UsageError(str(exc)) from exc
    _check_flags(u, req)
    if u.scheme == "pvc":
        verify_local(model_dir, req.verify)
        log.info("%s holds a loadable model", model_dir)
        return model_dir
    started = time.monotonic()
    first = inspect(model_dir, req, req.verify)
    if first.ok:
        log.info("cache hit: %s is complete (%.3fs)", model_dir, time.monotonic() - started)
        return model_dir
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / LOCK).touch()
    except OSError as exc:
        raise UsageError(
            f"cannot write to {model_dir}: {exc.strerror}; mount DEST read-write"
        ) from exc
    rev = f" at {req.revision}" if req.revision else ""
    log.info("pulling %s%s into %s", req.uri.split("?", 1)[0], rev, model_dir)
    with DirLock(model_dir / LOCK):
        again = inspect(model_dir, req, verify=False, quiet=True)
        if again.ok and again.stamp != first.stamp:
            log.info("another pull completed %s while this one waited", model_dir)
            return model_dir
        refresh(model_dir, req, opts, make_source(u, req, opts), first.good)
    return model_dir


def _check_flags(u: layout.ModelURI, req: Request) -> None:
    if req.files and u.scheme not in ("http", "https"):
        raise UsageError("--file is for https:// URIs only (other sources list their files)")
    if req.include and u.scheme != "hf":
        raise UsageError("--include is for hf:// URIs only (s3:// takes every object under PREFIX)")


def refresh(
    model_dir: Path, req: Request, opts: Options, source: Source, good: set[RemoteFile]
) -> None:
    """Under the lock: fetch what is missing or damaged, then write the marker last."""
    (model_dir / MARKER).unlink(missing_ok=True)
    listing = with_retries(f"listing {req.uri}", source.listing, opts)
    files = listing.files
    for f in files:
        check_path(f.path)
    todo = [f for f in files if not _in_place(model_dir, f, good)]
    kept = len(files) - len(todo)
    if kept:
        log.info("%d of %d files already in place and intact", kept, len(files))
    if todo:
        Transfer(source, model_dir, opts).run(todo)
    manifest = [replace(f, checksum=source.expected(f), key="", extra={}) for f in files]
    write_marker(model_dir, Marker(req.key(), listing.resolved, manifest))
    clean_tmp(model_dir)
    log.info(
        "%s is complete (%d files, resolved %s)", model_dir, len(files), listing.resolved or "-"
    )


def check_path(path: str) -> None:
    """Refuse a listed path that would land outside the model directory or on our own files."""
    norm = posixpath.normpath(path)
    top = norm.split("/", 1)[0]
    if path.startswith("/") or top in ("..", ".", "") or top.startswith(".llmsvc") or "\0" in path:
        raise VerifyError(f"the source lists an unsafe file name {path!r}; refusing to write it")


def _in_place(model_dir: Path, f: RemoteFile, good: set[RemoteFile]) -> bool:
    """Already checked by :func:`inspect` for the same file, or intact on disk now."""
    if any(
        g.path == f.path and g.size == f.size and g.checksum in (f.checksum, None) for g in good
    ):
        return True
    return matches(model_dir / f.path, f.checksum, f.size)

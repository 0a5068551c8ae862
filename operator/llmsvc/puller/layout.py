"""Where a model lives under the cache root: PURE functions, standard library only.

The renderer imports this module to know, without running anything, which directory the engine
must load: ``posixpath.join(DEST, cache_dir(uri, revision))``.

=========================  ==============================================================
URI                        ``cache_dir`` (relative to DEST)
=========================  ==============================================================
``hf://ORG/NAME``          ``hf/ORG/NAME/<revision or main>``
``hf://NAME``              ``hf/_/NAME/<revision or main>`` (legacy repos without an org)
``s3://BUCKET/PREFIX``     ``s3/BUCKET/PREFIX/<revision or latest>``
``gs://BUCKET/PREFIX``     ``gs/BUCKET/PREFIX/<revision or latest>``
``https://HOST/PATH``      ``https/HOST[_PORT]/PATH/<revision or latest>`` (query ignored)
``pvc://CLAIM/PATH``       ``PATH`` (the claim itself is mounted at DEST; ``.`` for its root)
``file:///PATH``           ``/PATH`` (absolute: ``posixpath.join`` keeps it as it is)
=========================  ==============================================================

For object stores and HTTPS the revision is only a cache key: change it to force a fresh copy
when the objects behind the same URI change.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = ("hf", "s3", "gs", "http", "https", "pvc", "file")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_DEFAULT_REVISION = {"hf": "main"}


class BadURIError(ValueError):
    """The URI or revision cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ModelURI:
    """A parsed model URI: ``scheme``, ``host`` (org, bucket, claim or host:port), ``path``."""

    scheme: str
    host: str
    path: str
    raw: str


def parse_uri(uri: str) -> ModelURI:
    """Split and validate ``uri``; raises :class:`BadURIError` naming the problem."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadURIError(
            f"unsupported model URI {uri!r}: use one of hf://ORG/NAME, s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, https://HOST/PATH, pvc://CLAIM/PATH or file:///PATH"
        )
    path = _clean_path(unquote(parts.path), uri)
    parsed = ModelURI(scheme, parts.netloc, path, uri.strip())
    _CHECKS[scheme](parsed)
    return parsed


def _clean_path(path: str, uri: str) -> str:
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise BadURIError(f"model URI {uri!r} must not contain '..'")
    return "/".join(segments)


def _check_hf(u: ModelURI) -> None:
    names = [u.host, *u.path.split("/")] if u.path else [u.host]
    if len(names) > 2 or not all(_SEGMENT.match(n) for n in names):
        raise BadURIError(f"Hugging Face URI {u.raw!r} must look like hf://ORG/NAME")


def _check_bucket(u: ModelURI) -> None:
    if not _BUCKET.match(u.host):
        raise BadURIError(
            f"{u.scheme}:// URI {u.raw!r} needs a valid bucket: {u.scheme}://BUCKET/PREFIX"
        )


def _check_http(u: ModelURI) -> None:
    if not u.host or not u.path:
        raise BadURIError(f"HTTP URI {u.raw!r} needs a host and a path: https://HOST/PATH")


def _check_pvc(u: ModelURI) -> None:
    if not _SEGMENT.match(u.host):
        raise BadURIError(f"PVC URI {u.raw!r} must look like pvc://CLAIM/PATH")


def _check_file(u: ModelURI) -> None:
    if u.host not in ("", "localhost"):
        raise BadURIError(f"file URI {u.raw!r} must be absolute: file:///PATH (three slashes)")


_CHECKS = {
    "hf": _check_hf,
    "s3": _check_bucket,
    "gs": _check_bucket,
    "http": _check_http,
    "https": _check_http,
    "pvc": _check_pvc,
    "file": _check_file,
}


def revision_dir(scheme: str, revision: str | None) -> str:
    """The last path component for ``revision``; '/' in a revision (refs/pr/1) becomes '--'."""
    if revision is None or revision == "":
        return _DEFAULT_REVISION.get(scheme, "latest")
    if not _REVISION.match(revision) or ".." in revision:
        raise BadURIError(f"revision {revision!r} may hold only letters, digits and . _ - /")
    return revision.replace("/", "--")


def cache_dir(uri: str, revision: str | None) -> str:
    """Directory of the model for ``(uri, revision)``, relative to DEST (absolute for file://)."""
    u = parse_uri(uri)
    if u.scheme == "pvc":
        return u.path or "."
    if u.scheme == "file":
        return "/" + u.path
    rev = revision_dir(u.scheme, revision)
    if u.scheme == "hf":
        org, name = (u.host, u.path) if u.path else ("_", u.host)
        return posixpath.join("hf", org, name, rev)
    host = u.host.replace(":", "_") if u.scheme in ("http", "https") else u.host
    return posixpath.join(u.scheme, host, *([u.path] if u.path else []), rev)


def model_path(uri: str, revision: str | None, dest: str) -> str:
    """Absolute directory the engine loads: ``dest`` joined with :func:`cache_dir`."""
    return posixpath.normpath(posixpath.join(dest, cache_dir(uri, revision)))

"""Where a model lives under the cache root: PURE functions, standard library only.

The renderer imports this module to know, without running anything, which directory the engine
must load: ``posixpath.join(DEST, cache_dir(uri, revision))``.

=========================  ==============================================================
URI                        ``cache_dir`` (relative to DEST)
=========================  ==============================================================
``hf://ORG/NAME``          ``hf/ORG/NAME/<revision or main>``
``s3://BUCKET/PREFIX``     ``s3/BUCKET/PREFIX/<revision or latest>``
``https://HOST/PATH``      ``https/HOST[_PORT]/PATH/<revision or latest>`` (query ignored;
                           ``http://`` alike under ``http/``)
``pvc://CLAIM/PATH``       ``PATH`` (the claim itself is mounted at DEST; ``.`` for its root)
=========================  ==============================================================

For object stores and HTTPS the revision is only a cache key: change it to force a fresh copy
when the objects behind the same URI change.

:data:`URI_FORMS` is the ONE table of accepted URIs: the CRD's admission rule (CEL, built in
:mod:`llmsvc.api.rules`) and :func:`parse_uri` both use its regular expressions, so the API server
and the puller accept exactly the same strings. The patterns use only constructs that mean the same
in Python's ``re`` and in RE2 (which CEL uses): explicit ASCII classes, no ``\\s``, no lookaround.
``gs://`` is not built in (GCS speaks the S3 API: ``s3://`` with ``AWS_ENDPOINT_URL``), and
``file://`` is not offered: the puller runs in its own image, so a path inside the engine image is
not visible to it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# A path segment: RFC 3986 pchar without the quote character (it would end CEL's string literal)
# and with percent-escapes of '.', '/' and control characters left out, so that no decoded segment
# can be '.' or '..' or hold a NUL; the segments '.' and '..' themselves are excluded too.
_PCHAR = r"([A-Za-z0-9_~!$&()*+,;=:@-]|%[3-9A-Fa-f][0-9A-Fa-f]|%2[0-9A-Da-d])"  # no '.'
_SEGMENT_RE = rf"(\.{{0,2}}{_PCHAR}({_PCHAR}|\.)*|\.{{3,}}({_PCHAR}|\.)*)"
_PATH_RE = rf"(/{_SEGMENT_RE})*/?"
_HF_NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_BUCKET_RE = r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]"
_HOST_RE = r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?"
_QUERY_RE = r"(\?([A-Za-z0-9_~!$&()*+,;=:@/?.-]|%[0-9A-Fa-f]{2})*)?"
_CLAIM_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


@dataclass(frozen=True)
class URIForm:
    """One accepted scheme: the whole-URI pattern and the form to show when a URI misses it."""

    scheme: str
    pattern: str
    form: str


URI_FORMS = (
    URIForm("hf", rf"hf://{_HF_NAME}/{_HF_NAME}", "hf://ORG/NAME"),
    URIForm("s3", rf"s3://{_BUCKET_RE}{_PATH_RE}", "s3://BUCKET/PREFIX"),
    URIForm("https", rf"https://{_HOST_RE}(/{_SEGMENT_RE})+/?{_QUERY_RE}", "https://HOST/PATH"),
    URIForm("http", rf"http://{_HOST_RE}(/{_SEGMENT_RE})+/?{_QUERY_RE}", "http://HOST/PATH"),
    URIForm("pvc", rf"pvc://{_CLAIM_RE}{_PATH_RE}", "pvc://CLAIM/PATH"),
)
SCHEMES = tuple(f.scheme for f in URI_FORMS)
URI_PATTERN = "^(" + "|".join(f.pattern for f in URI_FORMS) + ")$"
URI_FORMS_TEXT = ", ".join(f.form for f in URI_FORMS)
_URI = re.compile(URI_PATTERN)
_FORMS = {f.scheme: re.compile(f"^{f.pattern}$") for f in URI_FORMS}
_HINTS = {
    "gs": "gs:// is not built in: use s3://BUCKET/PREFIX with "
    "AWS_ENDPOINT_URL=https://storage.googleapis.com and GCS HMAC keys",
    "file": "file:// is not supported (the puller cannot see the engine image): "
    "put the weights on a volume and use pvc://CLAIM/PATH",
}
_REVISION = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")
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


def check_uri(uri: str) -> None:
    """Raise :class:`BadURIError` unless ``uri`` matches :data:`URI_PATTERN` (the CRD's rule)."""
    if _URI.fullmatch(uri):
        return
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in _HINTS:
        raise BadURIError(f"unsupported model URI {uri!r}: {_HINTS[scheme]}")
    if scheme in _FORMS:
        form = next(f.form for f in URI_FORMS if f.scheme == scheme)
        raise BadURIError(
            f"model URI {uri!r} does not have the form {form} (ASCII letters, digits and "
            "-._~!$&()*+,;=:@ in paths, no '.' or '..' segments, no whitespace)"
        )
    raise BadURIError(f"unsupported model URI {uri!r}: use one of {URI_FORMS_TEXT}")


def parse_uri(uri: str) -> ModelURI:
    """Validate ``uri`` against the one table, then split it; raises :class:`BadURIError`."""
    check_uri(uri)
    parts = urlsplit(uri)
    path = _clean_path(unquote(parts.path), uri)
    return ModelURI(parts.scheme, parts.netloc, path, uri)


def _clean_path(path: str, uri: str) -> str:
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:  # unreachable after check_uri; kept as a second line of defence
        raise BadURIError(f"model URI {uri!r} must not contain '..'")
    return "/".join(segments)


def revision_dir(scheme: str, revision: str | None) -> str:
    """The last path component for ``revision``; '/' in a revision (refs/pr/1) becomes '--'."""
    if revision is None or revision == "":
        return _DEFAULT_REVISION.get(scheme, "latest")
    if not _REVISION.match(revision) or ".." in revision:
        raise BadURIError(f"revision {revision!r} may hold only letters, digits and . _ - /")
    return revision.replace("/", "--")


def cache_dir(uri: str, revision: str | None) -> str:
    """Directory of the model for ``(uri, revision)``, relative to DEST."""
    u = parse_uri(uri)
    if u.scheme == "pvc":
        return u.path or "."
    rev = revision_dir(u.scheme, revision)
    if u.scheme == "hf":
        return posixpath.join("hf", u.host, u.path, rev)
    host = u.host.replace(":", "_") if u.scheme in ("http", "https") else u.host
    return posixpath.join(u.scheme, host, *([u.path] if u.path else []), rev)


def model_path(uri: str, revision: str | None, dest: str) -> str:
    """Absolute directory the engine loads: ``dest`` joined with :func:`cache_dir`."""
    return posixpath.normpath(posixpath.join(dest, cache_dir(uri, revision)))

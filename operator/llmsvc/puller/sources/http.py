"""A small thread-safe HTTP/1.1 client (standard library) and the ``https://`` source.

Each thread keeps one keep-alive connection per origin. Redirects are followed (relative ones
too); the Authorization header is dropped when a redirect leaves the original origin, as
browsers and huggingface_hub do, so tokens never reach a CDN.
"""

from __future__ import annotations

import http.client
import os
import posixpath
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urljoin, urlsplit

from llmsvc.puller.errors import (
    CHANGED,
    AccessDeniedError,
    NetworkError,
    NotFoundError,
    TransientError,
    VerifyError,
)
from llmsvc.puller.manifest import Checksum, RemoteFile
from llmsvc.puller.sources import Listing

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_MAX_REDIRECTS = 8
TOKEN_ENV = "LLMSVC_HTTP_TOKEN"  # noqa: S105 (a variable name)
ErrorHook = Callable[[http.client.HTTPResponse, str], None]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class HttpStream:
    """The body of one response; skips leading bytes when a server ignored the Range."""

    def __init__(self, client: HttpClient, resp: http.client.HTTPResponse, skip: int) -> None:
        self._client, self._resp, self._skip = client, resp, skip
        self.headers = resp.headers

    def readinto(self, buf: memoryview) -> int:
        try:
            while self._skip:
                dropped = self._resp.read(min(self._skip, 1 << 20))
                if not dropped:
                    raise TransientError("connection closed while skipping to the range start")
                self._skip -= len(dropped)
            return self._resp.readinto(buf)
        except (http.client.HTTPException, OSError) as exc:
            self._client.forget()
            raise TransientError(f"reading the body failed: {exc!r}") from exc

    def close(self) -> None:
        if not self._resp.isclosed():
            self._client.forget()  # an unread body makes the connection unusable
        self._resp.close()


class HttpClient:
    """GET with ranges, redirects, per-thread keep-alive and status mapping to pull errors."""

    def __init__(
        self,
        headers: Mapping[str, str],
        credential: str,
        timeout: float = 30.0,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._credential = credential
        self._timeout = timeout
        self._on_error = on_error
        self._local = threading.local()

    def _conn(self, origin: tuple[str, str]) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "pool", {}
        )
        if origin not in pool:
            cls = (
                http.client.HTTPSConnection if origin[0] == "https" else http.client.HTTPConnection
            )
            pool[origin] = cls(origin[1], timeout=self._timeout)
        self._local.last = origin
        return pool[origin]

    def forget(self) -> None:
        """Close and drop this thread's connection used last (after an error or a partial read)."""
        pool = self._local.__dict__.get("pool", {})
        conn = pool.pop(getattr(self._local, "last", None), None)
        if conn is not None:
            conn.close()

    def _request(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._conn((parts.scheme, parts.netloc))
        try:
            conn.request("GET", target or "/", headers=headers)
            return conn.getresponse()
        except (http.client.HTTPException, OSError) as exc:
            self.forget()
            raise TransientError(f"GET {parts.netloc}{parts.path}: {exc!r}") from exc

    def get(
        self, url: str, start: int = 0, end: int | None = None, validator: str = ""
    ) -> HttpStream:
        """Open bytes ``[start, end)`` of ``url`` (``end=None``: to the end of the resource);
        with ``validator`` (the ETag or Last-Modified seen before) only if it is unchanged."""
        headers = dict(self._headers) | _precondition(validator)
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={start}-{last}"
        first = _origin(url)
        for _ in range(_MAX_REDIRECTS):
            resp = self._request(url, headers)
            if resp.status in (301, 302, 303, 307, 308):
                url = urljoin(url, resp.headers.get("Location", ""))
                resp.read()
                if _origin(url) != first:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                continue
            return self._body(resp, url, start)
        raise NetworkError(f"too many redirects fetching {_safe(url)}")

    def _body(self, resp: http.client.HTTPResponse, url: str, start: int) -> HttpStream:
        if resp.status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != start:
                resp.close()
                self.forget()
                raise TransientError(f"{_safe(url)} answered a different range than asked")
            return HttpStream(self, resp, 0)
        if resp.status == 200:
            return HttpStream(self, resp, start)
        body = resp.read(2048).decode(errors="replace")
        self.forget()
        if self._on_error is not None:
            self._on_error(resp, url)
        raise self._status_error(resp.status, url, body)

    def _status_error(self, status: int, url: str, body: str) -> Exception:
        where = _safe(url)
        if status in _RETRY_STATUS:
            return TransientError(f"HTTP {status} from {where}")
        if status == 412:
            return VerifyError(f"{where}: {CHANGED}")
        if status in (404, 410):
            return NotFoundError(f"{where} does not exist (HTTP {status})")
        if status in (401, 403):
            return AccessDeniedError(
                f"{where} refused access (HTTP {status}) with {self._credential}; "
                "check that the credential exists and may read this resource"
            )
        return NetworkError(f"unexpected HTTP {status} from {where}: {body[:200]}")


def _precondition(validator: str) -> dict[str, str]:
    """If-Match for a strong ETag, If-Unmodified-Since for a date (weak ETags cannot be used)."""
    if validator.startswith('"'):
        return {"If-Match": validator}
    if validator and not validator.startswith("W/"):
        return {"If-Unmodified-Since": validator}
    return {}


def _safe(url: str) -> str:
    """The URL without its query string (presigned URLs carry signatures there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def describe_token(env: str, token: str | None) -> str:
    """Name a token for error messages without revealing it."""
    if not token:
        return f"no credentials (set {env} to send one)"
    return f"the token from {env} (ending ...{token[-4:]})" if len(token) > 12 else f"{env}"


@dataclass(frozen=True)
class Probe:
    """What a 1-byte GET tells about a resource."""

    size: int
    ranges: bool
    checksum: Checksum | None
    validator: str  # ETag or Last-Modified: a partial file is resumed only if it is unchanged


def probe(client: HttpClient, url: str) -> Probe:
    """Size, range support, advertised sha256 and validator of ``url`` (``Range: bytes=0-0``).

    A ranged GET works where HEAD does not (presigned URLs are signed for GET only).
    """
    stream = client.get(url, 0, 1)
    try:
        h = stream.headers
        validator = h.get("ETag") or h.get("Last-Modified") or ""
        m = _CONTENT_RANGE.match(h.get("Content-Range", ""))
        if m is not None and m.group(3) != "*":
            stream.readinto(memoryview(bytearray(2)))  # the one byte: the connection stays reusable
            return Probe(int(m.group(3)), True, _advertised_sha256(h), validator)
        length = h.get("Content-Length")
        if length is None:
            raise NetworkError(f"{_safe(url)} sends no size (Content-Length); cannot verify it")
        return Probe(int(length), False, _advertised_sha256(h), validator)
    finally:
        stream.close()


def _advertised_sha256(h: Message) -> Checksum | None:
    value = h.get("X-Checksum-Sha256") or h.get("x-amz-meta-sha256")
    return Checksum("sha256", value.lower()) if value and len(value) == 64 else None


class HttpsSource:
    """``https://HOST/PATH``: one file, or with ``files`` the listed names under PATH."""

    def __init__(self, url: str, files: list[str], timeout: float) -> None:
        token = os.environ.get(TOKEN_ENV)
        headers = {"User-Agent": "llmsvc-pull"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = HttpClient(headers, describe_token(TOKEN_ENV, token), timeout)
        base = url.split("?", 1)[0]
        if files:
            self._urls = {name: urljoin(base.rstrip("/") + "/", name) for name in files}
        else:
            self._urls = {posixpath.basename(urlsplit(base).path): url}

    def listing(self) -> Listing:
        out = []
        for name, url in self._urls.items():
            p = probe(self._client, url)
            extra = {"validator": p.validator}
            out.append(RemoteFile(name, p.size, p.checksum, key=url, ranges=p.ranges, extra=extra))
        return Listing(out, "")

    def open(self, f: RemoteFile, start: int, end: int) -> HttpStream:
        return self._client.get(f.key, start, end, f.extra.get("validator", ""))

    def expected(self, f: RemoteFile) -> Checksum | None:
        return f.checksum

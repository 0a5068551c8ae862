"""Real HTTP servers on 127.0.0.1 for the puller tests: a ranged file server and a fake hub.

``FileServer`` serves in-memory files with Range support and records every request; faults can
be injected (drop the connection after N bytes, answer a status, throttle). ``FakeHub`` speaks
the part of the Hugging Face Hub API that huggingface_hub and ``llmsvc pull`` use:
``GET /api/models/{repo}/revision/{rev}?blobs=true`` and ``GET|HEAD /{repo}/resolve/{rev}/{path}``
with ETag / X-Repo-Commit / X-Linked-Size / X-Linked-Etag headers and an LFS redirect to a
content-addressed CDN path, as the real hub does.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Fault:
    """A one-shot or repeated fault for a path: drop after ``drop_after`` bytes or a status."""

    drop_after: int | None = None
    status: int | None = None
    times: int = 1
    then_serve: bytes | None = None  # after dropping, the file changes to these bytes


@dataclass
class Logged:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    auth: str | None
    sent: int = 0


@dataclass
class State:
    """Server-side content, faults, throttle and the request log."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[Logged] = field(default_factory=list)
    rate: float | None = None  # bytes per second per response, None = unthrottled
    token: str | None = None  # required bearer token, None = open
    sha256: bool = False  # advertise X-Checksum-Sha256 on file responses
    ranges: bool = True  # honour Range headers (False: always the whole file with 200)
    validators: bool = True  # send ETag (False: no ETag, Last-Modified or checksum at all)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, entry: Logged) -> Logged:
        with self.lock:
            self.requests.append(entry)
        return entry

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            fault = self.faults.get(path)
            if fault is None or fault.times <= 0:
                return None
            fault.times -= 1
            return fault

    def served(self, path: str) -> int:
        """Body bytes sent for ``path`` over all requests."""
        return sum(r.sent for r in self.requests if r.path == path)

    def gets(self, prefix: str = "") -> list[Logged]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith(prefix)]


class Handler(BaseHTTPRequestHandler):
    """Ranged GET of ``State.files``; subclasses add routes."""

    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        return

    def do_GET(self) -> None:
        self.route(head=False)

    def do_HEAD(self) -> None:
        self.route(head=True)

    def route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        entry = self.state.log(
            Logged(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
        )
        if self.state.token and self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self.reply(401, b"unauthorized", entry)
            return
        if path not in self.state.files:
            self.reply(404, b"not found", entry)
            return
        self.send_file(self.state.files[path], entry, head)

    def reply(
        self, status: int, body: bytes, entry: Logged, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            entry.sent += len(body)

    def send_file(
        self, data: bytes, entry: Logged, head: bool, headers: dict[str, str] | None = None
    ) -> None:
        fault = self.state.take_fault(entry.path)
        if fault is not None and fault.status is not None:
            self.reply(fault.status, b"injected failure", entry)
            return
        etag = f'"{hashlib.sha1(data).hexdigest()}"'
        wanted = self.headers.get("If-Match")
        if self.state.validators and wanted is not None and wanted != etag:
            self.reply(412, b"precondition failed", entry)
            return
        start, end, status = 0, len(data), 200
        m = _RANGE.match(entry.range or "") if self.state.ranges else None
        if m is not None:
            start = int(m.group(1))
            end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
            status = 206
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes" if self.state.ranges else "none")
        if self.state.validators:
            self.send_header("ETag", etag)
        if self.state.sha256:
            self.send_header("X-Checksum-Sha256", hashlib.sha256(data).hexdigest())
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if not head:
            limit = None if fault is None else fault.drop_after
            self.write_body(data[start:end], entry, limit)
        if fault is not None and fault.then_serve is not None:
            self.state.files[entry.path] = fault.then_serve

    def write_body(self, body: bytes, entry: Logged, limit: int | None) -> None:
        view = memoryview(body)[: limit if limit is not None else len(body)]
        step = 64 << 10
        for i in range(0, len(view), step):
            chunk = view[i : i + step]
            self.wfile.write(chunk)
            entry.sent += len(chunk)
            if self.state.rate:
                time.sleep(len(chunk) / self.state.rate)
        if limit is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


class _Quiet(ThreadingHTTPServer):
    """Clients that go away (killed pulls, dropped connections) are expected here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class Server:
    """A threaded server on 127.0.0.1 with a free port; ``url`` is its base URL."""

    def __init__(self, handler: type[Handler], state: State) -> None:
        handler_cls = type("BoundHandler", (handler,), {"state": state})
        self.state = state
        self.httpd = _Quiet(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class Repo:
    """A hub repository: files at one commit, refs (branches/tags) and access rules."""

    files: dict[str, bytes]
    lfs: set[str]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    refs: dict[str, str] = field(default_factory=dict)
    private_token: str | None = None
    gated: bool = False


class HubHandler(Handler):
    """The hub API subset; ``repos`` is set on the bound subclass."""

    repos: dict[str, Repo]
    cdn: str  # base URL of the CDN server holding /lfs-cdn/<sha256>

    def route(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        entry = self.state.log(
            Logged(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
        )
        if (m := re.match(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", path)) is not None:
            self.info(m.group(1), unquote(m.group(2)), entry)
        elif (m := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)) is not None:
            self.resolve(m.group(1), m.group(2), m.group(3), entry, head)
        else:
            self.reply(404, b"{}", entry)

    def access(self, repo_id: str, entry: Logged) -> Repo | None:
        repo = self.repos.get(repo_id)
        token = (entry.auth or "").removeprefix("Bearer ")
        if repo is None or (repo.private_token and token != repo.private_token):
            self.reply(
                401, b'{"error":"Repository not found"}', entry, {"X-Error-Code": "RepoNotFound"}
            )
            return None
        if repo.gated:
            self.reply(403, b'{"error":"gated"}', entry, {"X-Error-Code": "GatedRepo"})
            return None
        return repo

    def commit_of(self, repo: Repo, rev: str, entry: Logged) -> str | None:
        if rev in (repo.commit, "main"):
            return repo.commit
        if rev in repo.refs:
            return repo.refs[rev]
        self.reply(404, b'{"error":"Invalid rev id"}', entry, {"X-Error-Code": "RevisionNotFound"})
        return None

    def info(self, repo_id: str, rev: str, entry: Logged) -> None:
        repo = self.access(repo_id, entry)
        commit = None if repo is None else self.commit_of(repo, rev, entry)
        if repo is None or commit is None:
            return
        siblings = [self.sibling(name, data, repo) for name, data in sorted(repo.files.items())]
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings})
        self.reply(200, body.encode(), entry, {"Content-Type": "application/json"})

    @staticmethod
    def sibling(name: str, data: bytes, repo: Repo) -> dict[str, Any]:
        out: dict[str, Any] = {"rfilename": name}
        if name in repo.lfs:
            sha = hashlib.sha256(data).hexdigest()
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
            )
            out |= {"blobId": git_blob_sha1(pointer.encode()), "size": len(data)}
            out["lfs"] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            }
        else:
            out |= {"blobId": git_blob_sha1(data), "size": len(data)}
        return out

    def resolve(self, repo_id: str, rev: str, name: str, entry: Logged, head: bool) -> None:
        repo = self.access(repo_id, entry)
        commit = None if repo is None else self.commit_of(repo, rev, entry)
        if repo is None or commit is None:
            return
        if name not in repo.files:
            self.reply(404, b"{}", entry, {"X-Error-Code": "EntryNotFound"})
            return
        data = repo.files[name]
        headers = {"X-Repo-Commit": commit}
        if name in repo.lfs:
            sha = hashlib.sha256(data).hexdigest()
            headers |= {
                "ETag": f'"{git_blob_sha1(data)}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "Location": f"{self.cdn}/lfs-cdn/{sha}",
            }
            self.reply(302, b"", entry, headers)
            return
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        self.send_file(data, entry, head, headers)


def hub_server(repos: dict[str, Repo], state: State, cdn: Server) -> Server:
    """The hub; LFS files redirect to ``cdn`` (another origin, as on the real hub)."""
    for repo in repos.values():
        for name in repo.lfs:
            data = repo.files[name]
            cdn.state.files[f"/lfs-cdn/{hashlib.sha256(data).hexdigest()}"] = data
    handler = type("Hub", (HubHandler,), {"repos": repos, "cdn": cdn.url})
    return Server(handler, state)

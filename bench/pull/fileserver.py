"""A fast ranged static file server for the pull benchmark (sendfile, one thread per client).

Usage: ``python fileserver.py ROOT PORT [SHA256_JSON]``; binds 127.0.0.1 only. With SHA256_JSON
(``{"name": "hex"}``) it sends ``X-Checksum-Sha256`` so ``llmsvc pull`` verifies what it fetched.
Like nginx it sends an ETag (mtime and size), without which ``llmsvc pull`` fetches a file in one
stream instead of parallel ranges.
"""

from __future__ import annotations

import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def make_handler(root: Path, sums: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Files(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            name = self.path.split("?", 1)[0].lstrip("/")
            path = root / name
            if not name or ".." in name or not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            start, end, status = 0, size, 200
            m = _RANGE.match(self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            stat = path.stat()  # an ETag as nginx makes it: a puller resumes only with one
            self.send_header("ETag", f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            if name in sums:
                self.send_header("X-Checksum-Sha256", sums[name])
            self.end_headers()
            with path.open("rb") as f:
                self.wfile.flush()
                self.connection.sendfile(f, start, end - start)

    return Files


class Quiet(ThreadingHTTPServer):
    """Clients closing idle keep-alive connections are normal here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


def main() -> None:
    root, port = Path(sys.argv[1]), int(sys.argv[2])
    sums = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}
    server = Quiet(("127.0.0.1", port), make_handler(root, sums))
    server.daemon_threads = True
    print(f"serving {root} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    os.environ.pop("http_proxy", None)
    server.serve_forever()


if __name__ == "__main__":
    main()

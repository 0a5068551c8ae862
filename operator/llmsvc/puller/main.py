"""``llmsvc pull URI DEST``: the init container's pre-pull (argument parsing and exit codes)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmsvc.puller.progress import Progress

DESCRIPTION = """\
Pre-pull model weights into a shared cache directory under DEST, once.

The model lands in DEST/<cache dir> (see llmsvc.puller.layout.cache_dir), which is printed on
stdout as the last line; logs (progress every few seconds) go to stderr. A completion marker
(.llmsvc-complete.json: files, sizes, checksums) is written last; while it is valid a re-run is a
no-op without network access. Concurrent pulls of one model on a shared volume take a lock: one
downloads, the others wait and reuse it. A crashed pull leaves no marker and the next one
resumes its partial files. With --metrics-port it serves its progress on /metrics while it runs
(gauges llmsvc_pull_expected_bytes, _downloaded_bytes, _expected_files, _downloaded_files).
"""

EPILOG = """\
cache layout (relative to DEST; llmsvc.puller.layout.cache_dir):
  hf://ORG/NAME -> hf/ORG/NAME/<revision or main>    s3://B/P -> s3/B/P/<revision or latest>
  https://H/P   -> https/H/P/<revision or latest>    pvc://CLAIM/P -> P
  Fresh downloads are checked against the source's checksums and fsynced before the marker is
  written. A cached model is trusted by file sizes; --verify also recomputes checksums. A
  branch such as main is resolved once: pin a commit or tag to move to new weights.

sources:
  hf://ORG/NAME          Hugging Face repository at --revision (default main): configs,
                         tokenizer files and one weight format (*.safetensors, else *.bin),
                         checked against the hub's sha256 / git blob ids. --include adds globs.
  s3://BUCKET/PREFIX     every object under PREFIX/ (S3 or any S3-compatible store); large
                         objects are fetched as parallel ranges; ETags verified (MD5/multipart).
  https://HOST/PATH      one file, or with --file NAME (repeatable) the listed files under PATH
                         (http:// alike); verified by size (and sha256 when the server sends
                         X-Checksum-Sha256); resumed only when the server sends an ETag,
                         Last-Modified or checksum, else fetched again from the first byte.
  pvc://CLAIM/PATH       the claim is mounted at DEST: nothing is fetched; DEST/PATH is checked
                         to hold a loadable model (config.json + weights, index shards present).
  The URI forms are exactly those the LLMService CRD admits (llmsvc.puller.layout.URI_FORMS).
  Google Cloud Storage: s3://BUCKET/PREFIX with AWS_ENDPOINT_URL=https://storage.googleapis.com
  and GCS HMAC keys.

environment:
  HF_TOKEN               token for private/gated hub repos (HUGGING_FACE_HUB_TOKEN also read)
  HF_ENDPOINT            hub URL (default https://huggingface.co), e.g. a mirror
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                         S3 credentials (else boto3's chain: web identity/IRSA, instance role;
                         with none, requests are unsigned for public buckets)
  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3
                         S3-compatible endpoint (MinIO, Ceph, R2, GCS); path-style addressing
  AWS_REGION, AWS_DEFAULT_REGION
                         region (default us-east-1)
  LLMSVC_HTTP_TOKEN      bearer token sent to https:// sources
  LLMSVC_PULL_CONCURRENCY, LLMSVC_PULL_PART_SIZE, LLMSVC_PULL_MULTIPART_THRESHOLD,
  LLMSVC_PULL_RETRIES, LLMSVC_PULL_PROGRESS_INTERVAL, LLMSVC_PULL_FSYNC (0 = --no-fsync),
  LLMSVC_PULL_CHECKSUMS (0 = --no-checksum), LLMSVC_PULL_METRICS_PORT
                         defaults of the matching flags (the init container's args are fixed)

exit codes:
  0  the model is complete (path on stdout)
  1  unexpected error
  2  usage: bad URI, revision or flag, or DEST not writable
  3  not found: repository, revision, bucket, prefix, object or path
  4  access denied (the message names the credential that was tried, never its secret)
  5  out of disk space (checked before downloading, and on write)
  6  network failures persisted after retries with backoff
  7  verification failed: size or checksum still wrong after fetching again, or a pvc://
     directory does not hold a loadable model
"""

_SIZE = re.compile(r"^(\d+)\s*(|k|ki|kib|m|mi|mib|g|gi|gib)$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"8Mi"``, ``"8MiB"``, ``"8m"`` or ``"8388608"`` -> bytes (binary units)."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"size {text!r}: use bytes or a number with Ki/Mi/Gi")
    return int(m.group(1)) * _FACTORS[m.group(2)[:1].lower()]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``llmsvc pull``."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("uri", help="model URI (see sources)")
    parser.add_argument("dest", type=Path, help="cache root, e.g. /models")
    parser.add_argument("--revision", help="hub branch/tag/commit; for other sources a cache key")
    parser.add_argument("--file", action="append", default=[], help="https: a file under the URI")
    parser.add_argument("--include", action="append", default=[], help="hf: extra glob to fetch")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="recompute checksums of cached files; refetch bad ones",
    )
    add = parser.add_argument
    add(
        "--concurrency",
        type=int,
        default=int(_env("LLMSVC_PULL_CONCURRENCY", "8")),
        help="parallel range downloads (default 8)",
    )
    add(
        "--part-size",
        type=parse_size,
        default=_env("LLMSVC_PULL_PART_SIZE", "32Mi"),
        help="range size for large files (default 32Mi)",
    )
    add(
        "--multipart-threshold",
        type=parse_size,
        default=_env("LLMSVC_PULL_MULTIPART_THRESHOLD", "64Mi"),
        help="files above this size are fetched as parallel ranges (default 64Mi)",
    )
    add(
        "--retries",
        type=int,
        default=int(_env("LLMSVC_PULL_RETRIES", "8")),
        help="retries per request on network errors, 5xx and 429 (default 8)",
    )
    add(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        default=_env("LLMSVC_PULL_FSYNC", "1") not in ("0", "false", "no"),
        help="skip fsync before the marker (fine for emptyDir caches, which die with the node)",
    )
    add(
        "--no-checksum",
        dest="checksums",
        action="store_false",
        default=_env("LLMSVC_PULL_CHECKSUMS", "1") not in ("0", "false", "no"),
        help="check only sizes of fresh downloads (checksums are still recorded for --verify)",
    )
    add("--backoff", type=float, default=0.5, help="first retry delay in seconds (doubles)")
    add("--timeout", type=float, default=30.0, help="connect/read timeout in seconds")
    add(
        "--progress-interval",
        type=float,
        default=float(_env("LLMSVC_PULL_PROGRESS_INTERVAL", "5")),
        help="seconds between progress log lines (default 5)",
    )
    add(
        "--metrics-port",
        type=int,
        default=int(_env("LLMSVC_PULL_METRICS_PORT", "0")),
        help="serve progress gauges (llmsvc_pull_*) on /metrics at this port while pulling "
        "(default 0: off)",
    )


def run(args: argparse.Namespace) -> int:
    """Pull, print the model directory, return the documented exit code."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s llmsvc-pull %(levelname)s %(message)s",
    )
    for noisy in ("httpx", "httpx2", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from llmsvc.puller.errors import PullError
    from llmsvc.puller.pull import Request, pull
    from llmsvc.puller.transfer import Options

    req = Request(
        args.uri,
        args.dest,
        args.revision,
        tuple(args.file),
        tuple(args.include),
        args.verify,
        args.timeout,
    )
    opts = Options(
        concurrency=args.concurrency,
        part_size=args.part_size,
        threshold=args.multipart_threshold,
        retries=args.retries,
        backoff=args.backoff,
        progress_interval=args.progress_interval,
        fsync=args.fsync,
        checksums=args.checksums,
    )
    if args.metrics_port:
        opts.track = _serve_metrics(args.metrics_port)
    try:
        path = pull(req, opts)
    except PullError as exc:
        logging.getLogger("llmsvc.pull").error("%s (exit %d)", exc, exc.exit_code)
        return exc.exit_code
    print(path, flush=True)
    return 0


def _serve_metrics(port: int) -> Callable[[Progress], None]:
    """Start the progress endpoint; a port in use only costs the metrics, never the pull."""
    from llmsvc.puller.metrics import serve

    try:
        return serve(port).track
    except OSError as exc:
        logging.getLogger("llmsvc.pull").warning(
            "no progress metrics: cannot listen on port %d: %s", port, exc.strerror
        )
        return lambda _: None

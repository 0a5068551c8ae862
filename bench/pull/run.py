"""``make bench-pull``: ``llmsvc pull`` throughput against a plain baseline, on loopback only.

A synthetic model (default 2 GiB in 4 shards plus a config) is served by a local HTTP server
(sendfile, ranged) and by a local S3 server (moto in server mode). For each source it times, in
the same run: the baseline (``curl``, one stream per file, the same bytes, written to disk),
``llmsvc pull`` (cold, into an empty cache, verifying sizes and checksums), and the warm re-run
(marker present). It prints throughput, the ratio pull/baseline (goal >= 0.8) and the warm time
(goal < 1 s). Everything lives in one temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from llmsvc.router.server import free_port

GiB = 1 << 30
MiB = 1 << 20
KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}  # moto accepts any
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Row:
    source: str
    size: int
    baseline: Sample
    pull: Sample
    warm: float
    note: str = ""

    def rate(self, s: Sample) -> str:
        return f"{self.size / s.wall / MiB:4.0f} MiB/s {s.wall:5.2f}s (cpu {s.cpu:4.1f}s)"

    def line(self) -> str:
        return (
            f"{self.source:<31} {self.size / GiB:4.2f} GiB | baseline {self.rate(self.baseline)} | "
            f"pull {self.rate(self.pull)} | ratio {self.baseline.wall / self.pull.wall:4.2f} | "
            f"warm {self.warm:4.2f}s | {self.note}"
        )


@dataclass(frozen=True)
class Sample:
    """Wall-clock seconds and CPU seconds (user + system) of the child processes."""

    wall: float
    cpu: float


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def med(samples: list[Sample]) -> Sample:
    return Sample(median(s.wall for s in samples), median(s.cpu for s in samples))


def generate(root: Path, total: int, shards: int) -> dict[str, dict[str, str]]:
    """Shards of unique pseudo-random bytes plus config.json; returns name -> digests."""
    root.mkdir(parents=True)
    block = os.urandom(16 * MiB)
    sums: dict[str, dict[str, str]] = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 (S3's ETag)
        with (root / name).open("wb") as f:
            for j in range(total // shards // len(block)):
                chunk = f"{i}-{j}".encode().ljust(64, b".") + block[64:]
                f.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
        sums[name] = {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}
    (root / "config.json").write_text(json.dumps({"architectures": ["Bench"]}))
    config = (root / "config.json").read_bytes()
    sums["config.json"] = {"sha256": hashlib.sha256(config).hexdigest()}
    return sums


@contextlib.contextmanager
def process(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server until the block ends; waits until ``port`` accepts connections."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} did not start on port {port}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({res.returncode}): {res.stderr[-2000:]}")
    return elapsed


@dataclass(frozen=True)
class Curl:
    """The baseline: plain curl, one stream per file, one file after the other, to disk; with
    ``check`` it then runs ``sha256sum``/``md5sum`` and fsyncs, the work ``llmsvc pull`` does
    by default."""

    urls: list[str]
    out: Path
    extra: tuple[str, ...] = ()
    check: str | None = None

    def __call__(self) -> Sample:
        self.out.mkdir(parents=True, exist_ok=True)
        os.sync()  # start from clean page cache state (not timed)
        started, cpu = time.perf_counter(), children_cpu()
        files = [self.out / url.rsplit("/", 1)[1] for url in self.urls]
        for url, path in zip(self.urls, files, strict=True):
            timed(["curl", "-sSf", *self.extra, "-o", str(path), url])
        if self.check:
            timed([f"{self.check}sum", *map(str, files)])
            for path in files:
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        sample = Sample(time.perf_counter() - started, children_cpu() - cpu)
        shutil.rmtree(self.out)
        return sample

    def label(self) -> str:
        return f"curl + {self.check}sum + fsync" if self.check else "curl"


def pull_pair(cmd: list[str], dest: Path, env: dict[str, str]) -> tuple[Sample, float]:
    """(cold, warm seconds) of ``llmsvc pull``; the cache is removed afterwards."""
    os.sync()  # not timed: the previous step's dirty pages must not slow this one
    cpu = children_cpu()
    wall = timed(cmd, env)
    cold = Sample(wall, children_cpu() - cpu)
    warm = timed(cmd, env)
    shutil.rmtree(dest)
    return cold, warm


@dataclass
class Case:
    """One comparison: how to run the baseline and which ``llmsvc pull`` arguments to time."""

    label: str
    baseline: Curl
    pull_args: list[str]
    env: dict[str, str]
    note: str


def compare(case: Case, work: Path, size: int, rounds: int) -> Row:
    """Alternate baseline and pull ``rounds`` times; medians of each, the slowest warm run."""
    dest = work / "cache"
    cmd = [str(BIN / "llmsvc"), "pull", case.pull_args[0], str(dest), *case.pull_args[1:]]
    base, cold, warm = [], [], []
    for _ in range(rounds):
        base.append(case.baseline())
        c, w = pull_pair(cmd, dest, case.env)
        cold.append(c)
        warm.append(w)
    note = f"vs {case.baseline.label()}; {case.note}"
    return Row(case.label, size, med(base), med(cold), max(warm), note)


FAST = ["--no-fsync", "--no-checksum"]
C2 = ["--concurrency", "2"]  # on loopback with 2 cores, fewer streams cost less CPU


def bench_http(
    src: Path, sums: dict[str, dict[str, str]], work: Path, size: int, rounds: int
) -> list[Row]:
    port = free_port()
    sha = work / "sha256.json"
    sha.write_text(json.dumps({f"model/{k}": v["sha256"] for k, v in sums.items()}))
    cmd = [sys.executable, str(HERE / "fileserver.py"), str(src.parent), str(port), str(sha)]
    base = f"http://127.0.0.1:{port}"
    urls = [f"{base}/model/{n}" for n in sums]
    args = [f"{base}/model", *[a for n in sums for a in ("--file", n)]]
    env = dict(os.environ)
    cases = [
        Case(
            "https, default", Curl(urls, work / "curl", (), "sha256"), args, env, "sha256 + fsync"
        ),
        Case(
            "https, --no-fsync --no-checksum", Curl(urls, work / "curl"), args + FAST, env, "sizes"
        ),
        Case(
            "https, same, concurrency 2", Curl(urls, work / "curl"), args + FAST + C2, env, "sizes"
        ),
    ]
    with process(cmd, port):
        return [compare(c, work, size, rounds) for c in cases]


def bench_s3(
    src: Path, sums: dict[str, dict[str, str]], work: Path, size: int, rounds: int
) -> list[Row]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | {
        "AWS_ACCESS_KEY_ID": KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": KEYS["aws_secret_access_key"],
        "AWS_ENDPOINT_URL": url,
        "AWS_REGION": "us-east-1",
    }
    sign = ("--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "bench:bench")
    urls = [f"{url}/bench/model/{n}" for n in sums]
    checked, plain = Curl(urls, work / "curl", sign, "md5"), Curl(urls, work / "curl", sign)
    # moto reads and copies the whole object for every ranged GET and serves requests under
    # one GIL, so it penalises parallel ranges; the second case uses curl's access pattern
    # (one object after the other, one GET each) to measure the client alone.
    serial = ["s3://bench/model", "--multipart-threshold", "64Gi", "--concurrency", "1"]
    cases = [
        Case("s3, moto, default", checked, ["s3://bench/model"], env, "ETag + fsync"),
        Case("s3, moto, serial, fast", plain, serial + FAST, env, "sizes; 1 GET/object"),
    ]
    with process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port):
        upload(url, src, sums)
        return [compare(c, work, size, rounds) for c in cases]


def upload(url: str, src: Path, sums: dict[str, dict[str, str]]) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEYS["aws_access_key_id"],
        aws_secret_access_key=KEYS["aws_secret_access_key"],
    )
    client.create_bucket(Bucket="bench")
    for name in sums:
        client.upload_file(str(src / name), "bench", f"model/{name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--only", choices=["http", "s3"], default=None)
    parser.add_argument("--rounds", type=int, default=2, help="baseline/pull alternations")
    parser.add_argument("--tmp", default=None, help="parent of the temporary directory")
    args = parser.parse_args()
    size = int(args.size_gib * GiB) // (args.shards * 16 * MiB) * (args.shards * 16 * MiB)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="llmsvc-bench-pull-", dir=args.tmp) as tmp:
        work = Path(tmp)
        src = work / "src" / "model"
        sums = generate(src, size, args.shards)
        total = size + (src / "config.json").stat().st_size
        for name, fn in (("http", bench_http), ("s3", bench_s3)):
            if args.only in (None, name):
                for row in fn(src, sums, work, total, args.rounds):
                    rows.append(row)
                    print(row.line(), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("goals: ratio >= 0.80 (pull vs baseline), warm re-run < 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

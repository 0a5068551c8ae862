"""Rank check: startup, readiness and liveness of one engine rank (standard library only).

Runs in the engine container as ``python3 -c "$LLMSVC_RANK_CHECK" KIND [options]``; exit 0 =
pass, 1 = fail with the reason on stderr (kubelet puts it in the probe's event). The rank and the
rendezvous come from the env the operator sets (NODE_RANK, MASTER_ADDR, MASTER_PORT).

vLLM's ``/health`` is not enough across nodes: with a dead worker the leader answers 200 for
~300 s while every request hangs, and a worker whose leader died sits silent forever. So:

==========  ============================  =====================================================
rank        startup / readiness           liveness
==========  ============================  =====================================================
leader (0)  ``/health`` is 200            ``/health`` 200, and the engine makes progress: with
                                          requests running or waiting, its step/token counters
                                          moved within ``--stall-seconds``; when idle, a
                                          1-token canary completion answers within
                                          ``--canary-seconds`` (it runs on every rank)
worker      startup: joined the leader's  still joined (an ESTABLISHED connection to
            rendezvous; readiness: pass   MASTER_ADDR:MASTER_PORT) and the rendezvous still
                                          accepts connections
==========  ============================  =====================================================

The progress check keeps its last observation in ``--state`` (container-local /tmp, so a
restarted container starts afresh); when that file cannot be written the check is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator

# Counters that move whenever the engine does work: scheduler steps, then tokens.
PROGRESS_COUNTERS = (
    "vllm:iteration_tokens_total_count",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
)
BUSY_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")
ESTABLISHED = "01"


class RankCheckError(Exception):
    """The rank is unhealthy; the message says why."""


def metric_sums(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of each named series over its labels, from Prometheus text exposition."""
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


def _get(url: str, timeout: float) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310  (http://127.0.0.1)
        return int(resp.status), resp.read().decode()


def health(base: str, timeout: float) -> None:
    """``/health`` must answer 200."""
    try:
        status, _ = _get(f"{base}/health", timeout)
    except OSError as error:
        raise RankCheckError(f"/health: {error}") from None
    if status != 200:  # pragma: no cover  (urllib raises on error statuses)
        raise RankCheckError(f"/health answered {status}")


def canary(base: str, timeout: float) -> None:
    """A 1-token completion must come back: proves every rank of the world still works."""
    _, body = _get(f"{base}/v1/models", timeout)
    model = json.loads(body)["data"][0]["id"]
    payload = {"model": model, "prompt": "ping", "max_tokens": 1, "temperature": 0}
    request = urllib.request.Request(  # noqa: S310  (http://127.0.0.1)
        f"{base}/v1/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            resp.read()
    except OSError as error:
        raise RankCheckError(f"idle engine: a 1-token canary request failed ({error})") from None


def _load_state(path: str) -> dict[str, float]:
    try:
        with open(path, encoding="utf-8") as f:
            return {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_state(path: str, state: dict[str, float]) -> bool:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(state, f)
    except OSError:
        return False
    return True


def progress(metrics: str, state_path: str, stall: float, now: float) -> bool:
    """With work queued, the counters must have moved within ``stall`` s; True when idle."""
    gauges = metric_sums(metrics, BUSY_GAUGES)
    work = sum(metric_sums(metrics, PROGRESS_COUNTERS).values())
    busy = sum(gauges.values()) > 0
    last = _load_state(state_path)
    if last.get("work") != work or not busy:
        _save_state(state_path, {"work": work, "since": now})
        return not busy
    if not _save_state(state_path, last):
        return False  # read-only /tmp: never kill a rank on a check we cannot make
    if now - last.get("since", now) > stall:
        running, waiting = (int(gauges[name]) for name in BUSY_GAUGES)
        raise RankCheckError(
            f"engine made no progress for {now - last['since']:.0f} s "
            f"with {running} requests running and {waiting} waiting"
        )
    return False


def leader_live(args: argparse.Namespace) -> None:
    """/health, then progress under load or a canary when idle."""
    base = f"http://127.0.0.1:{args.port}"
    health(base, args.timeout)
    _, metrics = _get(f"{base}/metrics", args.timeout)
    if progress(metrics, args.state, args.stall_seconds, time.monotonic()):
        canary(base, args.canary_seconds)


def _proc_net_tcp() -> Iterator[tuple[str, str, str]]:
    """(local, remote, state) hex fields of every TCP socket in this network namespace."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            yield fields[1], fields[2], fields[3]


def _hex_endpoint(ip: str, port: int) -> set[str]:
    """How ``ip:port`` appears in /proc/net/tcp (IPv4) and tcp6 (v4-mapped or IPv6)."""
    forms = set()
    if ":" in ip:
        raw = socket.inet_pton(socket.AF_INET6, ip)
    else:
        v4 = socket.inet_aton(ip)
        forms.add(v4[::-1].hex().upper())  # one 32-bit word in host (little-endian) order
        raw = bytes(10) + b"\xff\xff" + v4
    forms.add("".join(raw[i : i + 4][::-1].hex().upper() for i in range(0, 16, 4)))
    return {f"{form}:{port:04X}" for form in forms}


def rendezvous_addresses(host: str, port: int) -> set[str]:
    """Every /proc/net/tcp spelling of the leader's rendezvous address."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as error:
        raise RankCheckError(f"cannot resolve the leader {host}: {error}") from None
    return set().union(*(_hex_endpoint(str(info[4][0]), port) for info in infos))


def joined(host: str, port: int) -> None:
    """This rank holds an ESTABLISHED connection to the leader's rendezvous (its world)."""
    wanted = rendezvous_addresses(host, port)
    for _local, remote, state in _proc_net_tcp():
        if state == ESTABLISHED and remote in wanted:
            return
    raise RankCheckError(f"no connection to the leader's rendezvous {host}:{port}: world lost")


def reachable(host: str, port: int, timeout: float) -> None:
    """The leader's rendezvous still accepts connections (catches a vanished leader node)."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError as error:
        raise RankCheckError(f"leader rendezvous {host}:{port} unreachable: {error}") from None


def check(args: argparse.Namespace) -> None:
    """Run the check of ``args.kind`` for this rank; raises RankCheckError."""
    leader = os.environ.get("NODE_RANK", "0") == "0"
    if leader and args.kind == "live":
        leader_live(args)
    elif leader:
        health(f"http://127.0.0.1:{args.port}", args.timeout)
    elif args.kind in ("startup", "live"):
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        joined(host, port)
        if args.kind == "live":
            reachable(host, port, args.timeout)


def parser() -> argparse.ArgumentParser:
    """The check's command line."""
    p = argparse.ArgumentParser(prog="rank-check", description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["startup", "ready", "live"])
    p.add_argument("--port", type=int, default=8000, help="the leader's HTTP port")
    p.add_argument("--timeout", type=float, default=4.0, help="per HTTP/TCP call, seconds")
    p.add_argument("--stall-seconds", type=float, default=20.0, help="busy, no progress: fail")
    p.add_argument("--canary-seconds", type=float, default=10.0, help="idle canary timeout")
    p.add_argument("--state", default="/tmp/llmsvc-rank-check.json", help="progress state")  # noqa: S108
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status of the check: 0 pass, 1 fail (reason on stderr)."""
    args = parser().parse_args(argv)
    try:
        check(args)
    except (RankCheckError, OSError, ValueError, KeyError, IndexError) as error:
        print(f"rank-check {args.kind}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

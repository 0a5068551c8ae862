"""``make bench-router``: the router against nginx least_conn and a direct client, in one run.

Phase 1 (overhead): one ``llmsvc sim`` backend, N concurrent streams back to back, sent
(a) straight to the backend, (b) through nginx, (c) through ``llmsvc router``. The router's
added latency is its percentile minus the direct percentile.

Phase 2 (routing): four ``llmsvc sim`` backends with a bounded prefix cache, a chat workload of
sessions sharing long per-tenant system prompts, Poisson arrivals at several rates, sent through
(b) nginx least_conn and (c) the router with each policy. Caches are emptied before every run.
Loopback only; every loop is bounded in requests and time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import procs
from loadgen import closed_loop, open_loop
from report import Summary, summarize, table
from workload import schedule

POLICIES = ("round-robin", "least-request", "prefix-aware", "session")
ROUTING_SIM = [
    "--max-num-seqs", "32", "--kv-cache-tokens", "12000", "--max-model-len", "65536",
    "--prefill-base-ms", "2", "--prefill-ms-per-token", "0.1",
    "--itl-base-ms", "15", "--itl-ms-per-seq", "0.2",
]  # fmt: skip
OVERHEAD_SIM = [
    "--max-num-seqs", "2048", "--prefill-base-ms", "0", "--prefill-ms-per-token", "0",
    "--itl-base-ms", "100", "--itl-ms-per-seq", "0",
]  # fmt: skip


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=256, help="phase 1 streams")
    parser.add_argument("--overhead-requests", type=int, default=2048)
    parser.add_argument("--rates", default="8,20,32", help="phase 2 arrivals per second")
    parser.add_argument("--duration", type=float, default=20.0, help="phase 2 seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="phase 2 seconds not measured")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small run for a smoke test")
    parser.add_argument("--phases", default="overhead,routing", help="which phases to run")
    parser.add_argument("--policies", default=",".join(POLICIES), help="phase 2 router policies")
    parser.add_argument("--router-args", default="", help="extra phase 2 router flags")
    parser.add_argument("--no-nginx", action="store_true", help="phase 2 without nginx")
    parser.add_argument("--json", help="also write all figures to this file")
    return parser.parse_args()


async def overhead_targets(sim: procs.Proc) -> list[tuple[str, procs.Proc | None]]:
    """direct, nginx (when installed), and the router on each available event loop."""
    targets: list[tuple[str, procs.Proc | None]] = [("direct", None)]
    nginx = await procs.start_nginx([sim.url])
    if nginx is None:
        print(f"nginx is not installed; skipping it (install: {procs.NGINX_INSTALL})")
    else:
        targets.append(("nginx least_conn", nginx))
    loops = ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    for loop in loops:
        options = ["--max-concurrency", "4096", "--loop", loop]
        targets.append(
            (f"router ({loop})", await procs.start_router([sim.url], "least-request", options))
        )
    return targets


async def overhead_phase(args: argparse.Namespace) -> list[Summary]:
    sim = await procs.start_sim(OVERHEAD_SIM)
    rows = []
    targets: list[tuple[str, procs.Proc | None]] = []
    try:
        targets = await overhead_targets(sim)
        for name, proc in targets:
            base = proc.url if proc else sim.url
            await closed_loop(base, 16, 64, 10, limit_s=10.0)  # warm connections
            cpu = proc.cpu_seconds() if proc else 0.0
            start = time.perf_counter()
            results = await closed_loop(
                base, args.concurrency, args.overhead_requests, 10, limit_s=120.0, stagger_s=1.0
            )
            wall = time.perf_counter() - start
            cpu_s = proc.cpu_seconds() - cpu if proc else None
            rows.append(summarize(name, results, wall, cpu_s=cpu_s))
            print(f"  overhead {name}: done", flush=True)
    finally:
        for _, proc in targets:
            if proc:
                proc.stop()
        sim.stop()
    return rows


async def routing_run(
    name: str, base: str, backends: list[str], rate: float, args: argparse.Namespace
) -> Summary:
    await procs.reset_caches(backends)
    hits0, queries0 = await procs.sim_stats(backends)
    planned = schedule(rate, args.warmup + args.duration, args.seed)
    results = await open_loop(base, planned, args.max_tokens)
    hits, queries = await procs.sim_stats(backends)
    hit_rate = (hits - hits0) / (queries - queries0) if queries > queries0 else None
    print(f"  rate {rate:g}/s {name}: done", flush=True)
    measured = [r for r, p in zip(results, planned, strict=True) if p.at >= args.warmup]
    return summarize(name, measured, args.duration, hit_rate)


async def routing_phase(args: argparse.Namespace) -> dict[float, list[Summary]]:
    sims = [await procs.start_sim([*ROUTING_SIM, "--seed", str(i)]) for i in range(4)]
    backends = [s.url for s in sims]
    out: dict[float, list[Summary]] = {}
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            rows = []
            nginx = None if args.no_nginx else await procs.start_nginx(backends)
            if nginx is None and not args.no_nginx:
                print(f"nginx is not installed; skipping it (install: {procs.NGINX_INSTALL})")
            elif nginx is not None:
                rows.append(await routing_run("nginx least_conn", nginx.url, backends, rate, args))
                nginx.stop()
            for policy in args.policies.split(","):
                options = ["--max-concurrency", "32", *args.router_args.split()]
                router = await procs.start_router(backends, policy, options)
                rows.append(await routing_run(f"router {policy}", router.url, backends, rate, args))
                router.stop()
            out[rate] = rows
    finally:
        for sim in sims:
            sim.stop()
    return out


async def main() -> None:
    args = parse()
    if args.quick:
        args.concurrency, args.overhead_requests = 64, 256
        args.rates, args.duration, args.warmup = "8,24", 6.0, 2.0
    load_before = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average before {load_before[0]:.2f}", flush=True)
    print(
        f"phase 1: router overhead, {args.concurrency} concurrent streams, 1 sim backend",
        flush=True,
    )
    phases = set(args.phases.split(","))
    overhead = await overhead_phase(args) if "overhead" in phases else []
    print(
        "phase 2: routing quality, 4 sim backends, sessions sharing long system prompts", flush=True
    )
    routing = await routing_phase(args) if "routing" in phases else {}
    load_after = os.getloadavg()
    print()
    print(f"## Overhead: {args.concurrency} concurrent streams, one backend, 10 tokens each")
    print(table(overhead, "direct", "added"))
    for rate, rows in routing.items():
        print()
        print(
            f"## Routing: Poisson {rate:g} req/s, {args.duration:g} s measured after "
            f"{args.warmup:g} s warm-up, 4 backends, ratios vs nginx least_conn"
        )
        print(table(rows, "nginx least_conn", "ratio"))
    print()
    print(
        f"load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"{os.cpu_count()} cores"
    )
    if args.json:
        write_json(args.json, overhead, routing, (load_before[0], load_after[0]))


def write_json(
    path: str,
    overhead: list[Summary],
    routing: dict[float, list[Summary]],
    load: tuple[float, float],
) -> None:
    """All figures as JSON, for docs and comparisons."""
    figures = {
        "overhead": [asdict(r) for r in overhead],
        "routing": {str(k): [asdict(r) for r in v] for k, v in routing.items()},
        "load": list(load),
    }
    Path(path).write_text(json.dumps(figures, indent=1))


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run the finally blocks that stop the child processes


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    asyncio.run(main())

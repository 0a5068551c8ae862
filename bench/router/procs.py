"""Start and stop the benchmark's processes: ``llmsvc sim`` backends, ``llmsvc router``, nginx."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

from llmsvc.router.server import free_port, wait_ready

NGINX_INSTALL = "apt-get update && apt-get install -y nginx-light"


class Proc:
    """A child process serving HTTP on ``url``."""

    def __init__(self, argv: list[str], url: str) -> None:
        self.url = url
        self.popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its children."""
        return cpu_seconds(self.popen.pid)

    def stop(self) -> None:
        """Terminate the process (kill after 5 s)."""
        self.popen.terminate()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its direct children (e.g. nginx workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def llmsvc(*args: str) -> list[str]:
    """argv running ``llmsvc ARGS`` with this interpreter."""
    return [sys.executable, "-m", "llmsvc.cli", *args]


async def start_sim(options: list[str]) -> Proc:
    """One ``llmsvc sim`` on a free loopback port."""
    port = free_port()
    proc = Proc(llmsvc("sim", "--host", "127.0.0.1", "--port", str(port), *options), "")
    proc.url = f"http://127.0.0.1:{port}"
    await wait_ready(proc.url)
    return proc


async def start_router(backends: list[str], policy: str, options: list[str]) -> Proc:
    """``llmsvc router`` over ``backends`` on a free loopback port."""
    port = free_port()
    argv = llmsvc("router", "--host", "127.0.0.1", "--port", str(port), "--policy", policy)
    for url in backends:
        argv += ["--backend", url]
    proc = Proc(argv + options, f"http://127.0.0.1:{port}")
    await wait_ready(proc.url, "/ready")
    return proc


def nginx_config(backends: list[str], port: int, workdir: Path) -> str:
    """An nginx config proxying to ``backends`` with least_conn and no buffering."""
    servers = "\n".join(f"    server {u.removeprefix('http://')};" for u in backends)
    temp = "\n".join(
        f"  {kind}_temp_path {workdir}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
{temp}
  upstream backends {{
    least_conn;
{servers}
    keepalive 512;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 16m;
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


async def start_nginx(backends: list[str]) -> Proc | None:
    """nginx least_conn in front of ``backends``; ``None`` when nginx is not installed."""
    binary = shutil.which("nginx", path="/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin")
    if binary is None:
        return None
    port = free_port()
    workdir, config = _nginx_files(backends, port)
    proc = Proc(
        [binary, "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")],
        f"http://127.0.0.1:{port}",
    )
    await wait_ready(proc.url, "/health")
    return proc


def _nginx_files(backends: list[str], port: int) -> tuple[Path, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    config = workdir / "nginx.conf"
    config.write_text(nginx_config(backends, port, workdir))
    return workdir, config


async def reset_caches(backends: list[str]) -> None:
    """Empty every backend's prefix cache so each run starts cold."""
    async with aiohttp.ClientSession() as session:
        for url in backends:
            async with session.post(f"{url}/reset_prefix_cache") as response:
                response.raise_for_status()


async def sim_stats(backends: list[str]) -> tuple[int, int]:
    """Summed (prefix cache hits, queries) in tokens over ``backends``."""
    hits = queries = 0
    async with aiohttp.ClientSession() as session:
        for url in backends:
            async with session.get(f"{url}/sim/stats") as response:
                stats = await response.json()
            hits += stats["prefix_hits"]
            queries += stats["prefix_queries"]
    return hits, queries

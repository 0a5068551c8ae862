"""The engine's shell script and probe commands: one pod template serves every rank.

The rank is only known inside the pod (``$NODE_RANK``, from the pod-index label), so the container
runs ``/bin/sh -c SCRIPT`` that branches on it. The user's extra args never enter the script: they
are the container's ``args``, i.e. the shell's positional parameters, appended as ``"$@"``. So no
spec value can inject shell, and each arg is one execve string of its own (bounded by
:data:`llmsvc.api.rules.ARGS_BYTES_MAX`) instead of part of one script string, which execve caps at
128 KiB. The other strings from the user (model path, served name) go through
:func:`shlex.quote`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from llmsvc.api import LLMService
from llmsvc.render.names import HTTP_PORT, RAY_PORT

RANK_CHECK_ENV = "LLMSVC_RANK_CHECK"

_IS_LEADER = '[ "$NODE_RANK" = "0" ]'
INDENT = "  "
# $0 of the rank script (shown by ps); the container's args follow it as $1, $2, ...
SCRIPT_NAME = "llmsvc-rank"


def vllm_serve(svc: LLMService, model_path: str, *, headless: bool) -> list[str]:
    """The ``vllm serve`` words for one rank, already shell-quoted."""
    spec = svc.spec
    par = spec.parallelism
    words = [
        "vllm serve",
        shlex.quote(model_path),
        f"--tensor-parallel-size {par.tensor}",
        f"--pipeline-parallel-size {par.pipeline}",
        f"--max-model-len {spec.engine.max_model_len}",
        f"--gpu-memory-utilization {spec.engine.gpu_memory_utilization}",
        f"--served-model-name {shlex.quote(svc.served_name)}",
        f"--port {HTTP_PORT}",
    ]
    if par.backend == "ray":
        words.append("--distributed-executor-backend ray")
    elif par.spans_nodes:
        words += [
            f"--nnodes {par.nodes}",
            '--node-rank "$NODE_RANK"',
            '--master-addr "$MASTER_ADDR"',
            '--master-port "$MASTER_PORT"',
        ]
    if headless:
        words.append("--headless")
    return [*words, '"$@"']  # engine.args, passed as the container's args


def _exec(words: Sequence[str], indent: str = "") -> str:
    """``exec WORD \\ WORD ...`` with one word per line (quoted words may hold newlines)."""
    return indent + "exec " + f" \\\n{indent}  ".join(words)


def _branch(leader: Sequence[str], worker: Sequence[str]) -> str:
    """``if rank 0 then LEADER else WORKER fi``; the lines come already indented."""
    return "\n".join([f"if {_IS_LEADER}; then", *leader, "else", *worker, "fi"])


def native_script(svc: LLMService, model_path: str) -> str:
    """vLLM's own multi-node launch: every rank runs ``vllm serve``, ranks != 0 ``--headless``."""
    if not svc.spec.parallelism.spans_nodes:
        return f"set -eu\n{_exec(vllm_serve(svc, model_path, headless=False))}\n"
    leader = _exec(vllm_serve(svc, model_path, headless=False), INDENT)
    worker = _exec(vllm_serve(svc, model_path, headless=True), INDENT)
    return f"set -eu\n{_branch([leader], [worker])}\n"


# Counts the alive nodes of the local Ray cluster (0 while it is not reachable yet).
_RAY_ALIVE = (
    'python3 -c \'import ray; ray.init(address="auto", logging_level="ERROR"); '
    'print(sum(1 for n in ray.nodes() if n["Alive"]))\' 2>/dev/null || echo 0'
)
# Succeeds once the head's GCS port accepts connections.
_HEAD_UP = (
    "python3 -c 'import socket, sys; "
    f'socket.create_connection((sys.argv[1], {RAY_PORT}), 5)\' "$MASTER_ADDR" 2>/dev/null'
)


def ray_script(svc: LLMService, model_path: str) -> str:
    """Ray backend: rank 0 starts the head, waits for NNODES nodes, then serves; others join."""
    leader = [
        f"{INDENT}ray start --head --port={RAY_PORT}",
        f'{INDENT}until [ "$({_RAY_ALIVE})" -ge "$NNODES" ]; do sleep 5; done',
        _exec(vllm_serve(svc, model_path, headless=False), INDENT),
    ]
    worker = [
        f"{INDENT}until {_HEAD_UP}; do sleep 5; done",
        f'{INDENT}exec ray start --address="$MASTER_ADDR:{RAY_PORT}" --block',
    ]
    return f"set -eu\n{_branch(leader, worker)}\n"


def engine_command(svc: LLMService, model_path: str) -> list[str]:
    """The engine container's command for the chosen backend (its args are engine.args)."""
    if svc.spec.parallelism.backend == "ray":
        return ["/bin/sh", "-c", ray_script(svc, model_path), SCRIPT_NAME]
    return ["/bin/sh", "-c", native_script(svc, model_path), SCRIPT_NAME]


def rank_check_command(kind: str, **options: float) -> list[str]:
    """Exec probe running the rank check (:mod:`llmsvc.probe.rank_check`) for ``kind``.

    The engine image has python3 but not this package: the check's source travels in the env
    variable ``RANK_CHECK_ENV`` (one copy per pod template), and the probe runs it with
    ``python3 -c``. The check branches on ``$NODE_RANK`` itself: the leader checks HTTP and
    progress, workers their connection to the leader's rendezvous.
    """
    flags = "".join(f" --{name.replace('_', '-')} {value:g}" for name, value in options.items())
    return [
        "/bin/sh",
        "-c",
        f'exec python3 -c "${RANK_CHECK_ENV}" {kind} --port {HTTP_PORT}{flags}',
    ]

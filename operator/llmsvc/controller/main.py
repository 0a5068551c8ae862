"""``llmsvc operator``: run the kopf operator that reconciles LLMServices.

Cluster-wide by default; ``--namespace NS`` (repeatable) watches only those namespaces. The
image used for the weight-puller init containers and the routers defaults to ``$LLMSVC_IMAGE``
(the Helm chart sets it to the operator's own image).
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmsvc.controller.metrics import OperatorMetrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``llmsvc operator``."""
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable); default: every namespace",
    )
    parser.add_argument(
        "--image",
        default=os.environ.get("LLMSVC_IMAGE", ""),
        help="image for the puller init containers and routers (default: $LLMSVC_IMAGE, "
        "else the image matching this version)",
    )
    parser.add_argument(
        "--image-pull-secrets",
        default=os.environ.get("LLMSVC_IMAGE_PULL_SECRETS", ""),
        metavar="NAME,...",
        help="default imagePullSecrets of the pods it creates, when an LLMService sets none "
        "(default: $LLMSVC_IMAGE_PULL_SECRETS)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("LLMSVC_RESYNC", "30")),
        help="period of the drift-repairing resync of every LLMService (default 30)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=16,
        help="reconciles that may run at once (default 16); first passes of new LLMServices "
        "run one at a time regardless, once a batch of them has arrived",
    )
    parser.add_argument(
        "--restart-backoff-seconds",
        type=float,
        default=10.0,
        help="first delay between whole-group restarts; doubles each time up to 5 minutes",
    )
    parser.add_argument(
        "--health-address",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="liveness endpoint /healthz (default 0.0.0.0:8080)",
    )
    parser.add_argument(
        "--metrics-address",
        default="0.0.0.0:9090",
        metavar="HOST:PORT",
        help="Prometheus /metrics (default 0.0.0.0:9090; empty disables)",
    )
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        default=os.environ.get("LLMSVC_LEADER_ELECT", "") == "true",
        help="run only while holding a coordination.k8s.io Lease, so several replicas can run "
        "(default: $LLMSVC_LEADER_ELECT == true)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument(
        "--leader-election-name",
        default="llmservice-operator",
        metavar="NAME",
        help="name of the Lease (default llmservice-operator)",
    )
    parser.add_argument(
        "--mark-leader-pod",
        action="store_true",
        help="label this pod llmsvc.io/leader=true while it holds the Lease, for a Service that "
        "must reach the leader only (the metrics API); needs --leader-elect, $POD_NAME and "
        "$POD_NAMESPACE, and patch on pods in that namespace",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    from llmsvc.controller import autoscaler

    autoscaler.add_arguments(parser)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def split_names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def check_leader_flags(args: argparse.Namespace) -> None:
    """Refuse ``--mark-leader-pod`` without what it needs, saying what to add."""
    if not args.mark_leader_pod:
        return
    from llmsvc.controller.leadermark import OwnPod

    if not args.leader_elect:
        raise SystemExit("llmsvc operator: --mark-leader-pod needs --leader-elect")
    if OwnPod.from_env() is None:
        raise SystemExit(
            "llmsvc operator: --mark-leader-pod needs $POD_NAME and $POD_NAMESPACE "
            "(the downward API: metadata.name and metadata.namespace)"
        )


def run(args: argparse.Namespace) -> int:
    """Run the operator until it is stopped."""
    import logging

    import kopf

    from llmsvc.controller.handlers import register
    from llmsvc.controller.metrics import OperatorMetrics
    from llmsvc.controller.reconciler import Settings
    from llmsvc.controller.runtime import Runtime
    from llmsvc.render import DEFAULT_IMAGE

    check_leader_flags(args)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    metrics = OperatorMetrics()
    settings = Settings(
        image=args.image or DEFAULT_IMAGE,
        backoff_base=args.restart_backoff_seconds,
        pull_secrets=split_names(args.image_pull_secrets),
    )
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        resync=args.resync_seconds,
        workers=args.workers,
        namespaces=tuple(args.namespace),
    )
    registry = kopf.OperatorRegistry()
    register(registry, runtime)
    if args.metrics_api_address:
        from llmsvc.controller.autoscaler import Autoscaler
        from llmsvc.controller.autoscaler import register as register_autoscaler

        register_autoscaler(registry, Autoscaler(args, runtime))
    options = {
        "registry": registry,
        "standalone": True,
        "clusterwide": not args.namespace,
        "namespaces": args.namespace,
        "liveness_endpoint": f"http://{args.health_address}/healthz",
        # kopf would name itself after getpass.getuser(), which raises in the image: its numeric
        # non-root UID has no /etc/passwd entry (as under OpenShift's random UIDs).
        "identity": f"{socket.gethostname()}/{os.getpid()}",
    }
    return _serve(args, options, metrics)


def _serve(args: argparse.Namespace, options: dict[str, Any], metrics: OperatorMetrics) -> int:
    """Serve /metrics (standbys too) and run kopf, under the leader Lease with --leader-elect."""
    import asyncio

    async def serve() -> int:
        from llmsvc.controller import heap
        from llmsvc.controller.metrics import serve_metrics

        heap.install()
        thaw = asyncio.create_task(heap.thaw_forever())
        site = None
        if args.metrics_address:
            site = await serve_metrics(args.metrics_address, metrics.registry)
        try:
            if args.leader_elect:
                return await _elected(args, options)
            await kopf_operator(options)
            return 0
        finally:
            thaw.cancel()
            if site is not None:
                await site.cleanup()

    try:
        return asyncio.run(serve())
    except asyncio.CancelledError:  # as kopf.run: a cancelled operator is a stopped one
        return 0


async def kopf_operator(options: dict[str, Any], stop: Any = None) -> None:
    """kopf's operator coroutine with ``options`` (``stop``: an event that ends it)."""
    import kopf

    await kopf.operator(stop_flag=stop, **options)


async def _elected(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """Run kopf only while holding the leader Lease (see :mod:`llmsvc.controller.elected`)."""
    import asyncio

    from llmsvc.controller.elected import run_elected
    from llmsvc.controller.leadermark import OwnPod

    async def operate(stop: asyncio.Event) -> None:
        await kopf_operator(options, stop)

    namespace, name = args.leader_election_namespace, args.leader_election_name
    pod = OwnPod.from_env() if args.mark_leader_pod else None
    return await run_elected(namespace, name, args.health_address, operate, pod)

"""Routing policies: pure objects that pick a backend from an immutable snapshot.

No I/O, no HTTP, no Kubernetes here (an import-linter contract enforces it). ``make_policy``
builds one by its ``--policy`` name.
"""

from __future__ import annotations

from llmsvc.router.policies.base import Endpoint, Policy, RequestInfo, Snapshot
from llmsvc.router.policies.least_request import LeastRequest
from llmsvc.router.policies.prefix_aware import PrefixAware
from llmsvc.router.policies.round_robin import RoundRobin
from llmsvc.router.policies.session import SessionAffinity

POLICIES = ("round-robin", "least-request", "prefix-aware", "session")


def make_policy(name: str, balance_factor: float = 1.5, balance_slack: int = 8) -> Policy:
    """A new policy object for ``name`` (one of ``POLICIES``); the balance knobs: prefix-aware."""
    if name == "prefix-aware":
        return PrefixAware(balance_factor=balance_factor, balance_slack=balance_slack)
    factories: dict[str, type[Policy]] = {
        "round-robin": RoundRobin,
        "least-request": LeastRequest,
        "session": SessionAffinity,
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return factories[name]()


__all__ = ["POLICIES", "Endpoint", "Policy", "RequestInfo", "Snapshot", "make_policy"]

"""The checks of ``spec.networkPolicy.clientsFrom`` the API server would make, made first.

The CRD embeds each peer as-is, so a peer Kubernetes refuses (a typo in a key, a bad CIDR, an
``In`` without values) would reach the API server only inside a NetworkPolicy, whose rejection
leaves the pods it should close without a policy (the policies of groups of one pod are the only
ones selecting them). Rendering therefore refuses such a spec (the LLMService is Invalid, nothing
is applied or pruned) with the field and what to change, by the rules of Kubernetes'
NetworkPolicyPeer and LabelSelector validation.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

PEER_KEYS = ("podSelector", "namespaceSelector", "ipBlock")
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
EXPRESSION_KEYS = ("key", "operator", "values")
IPBLOCK_KEYS = ("cidr", "except")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_problems(peers: list[dict[str, Any]], field: str) -> list[str]:
    """One line per problem of the peers at ``field`` (e.g. ``spec.networkPolicy.clientsFrom``)."""
    problems: list[str] = []
    for i, peer in enumerate(peers):
        problems += _peer(peer, f"{field}[{i}]")
    return problems


def _peer(peer: dict[str, Any], at: str) -> list[str]:
    """The CRD's schema already holds each peer to be an object."""
    problems = _unknown(peer, PEER_KEYS, at)
    given = [k for k in PEER_KEYS if peer.get(k) is not None]
    if not given:
        problems.append(f"{at}: must set podSelector, namespaceSelector or ipBlock")
    elif "ipBlock" in given and len(given) > 1:
        problems.append(f"{at}: ipBlock may not be combined with podSelector or namespaceSelector")
    for k in ("podSelector", "namespaceSelector"):
        if peer.get(k) is not None:
            problems += _selector(peer[k], f"{at}.{k}")
    if peer.get("ipBlock") is not None:
        problems += _ip_block(peer["ipBlock"], f"{at}.ipBlock")
    return problems


def _unknown(obj: dict[str, Any], known: tuple[str, ...], at: str) -> list[str]:
    allowed = ", ".join(known)
    return [f"{at}.{k}: unknown field: use one of {allowed}" for k in obj if k not in known]


def _selector(selector: Any, at: str) -> list[str]:
    if not isinstance(selector, dict):
        return [f"{at}: must be a label selector (matchLabels, matchExpressions)"]
    problems = _unknown(selector, SELECTOR_KEYS, at)
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, dict):
        return [*problems, f"{at}.matchLabels: must map label keys to values"]
    for k, v in labels.items():
        problems += _key(k, f"{at}.matchLabels") + _value(v, f"{at}.matchLabels[{k}]")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        return [*problems, f"{at}.matchExpressions: must be a list"]
    for i, expression in enumerate(expressions):
        problems += _expression(expression, f"{at}.matchExpressions[{i}]")
    return problems


def _expression(expression: Any, at: str) -> list[str]:
    if not isinstance(expression, dict):
        return [f"{at}: must be an object with key, operator and values"]
    problems = _unknown(expression, EXPRESSION_KEYS, at) + _key(expression.get("key"), at)
    operator, values = expression.get("operator"), expression.get("values") or []
    if operator not in OPERATORS:
        problems.append(f"{at}.operator: {operator!r} is not one of {', '.join(OPERATORS)}")
    if not isinstance(values, list):
        return [*problems, f"{at}.values: must be a list of label values"]
    if operator in ("In", "NotIn") and not values:
        problems.append(f"{at}.values: operator {operator} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and values:
        problems.append(f"{at}.values: operator {operator} takes no values: remove them")
    for j, value in enumerate(values):
        problems += _value(value, f"{at}.values[{j}]")
    return problems


def _key(k: Any, at: str) -> list[str]:
    """A label key: an optional DNS-subdomain prefix and '/', then a name of 1-63 characters."""
    prefix, slash, name = k.rpartition("/") if isinstance(k, str) else ("", "", "")
    named = bool(NAME.match(name)) and len(name) <= 63
    if named and (not slash or (SUBDOMAIN.match(prefix) and len(prefix) <= 253)):
        return []
    return [f"{at}: {k!r} is not a label key ([prefix/]name, name 1-63 of A-Z a-z 0-9 - _ .)"]


def _value(v: Any, at: str) -> list[str]:
    if isinstance(v, str) and (v == "" or (len(v) <= 63 and NAME.match(v))):
        return []
    return [f"{at}: {v!r} is not a label value (a string of at most 63 of A-Z a-z 0-9 - _ .)"]


def _network(text: Any, at: str, example: str) -> tuple[Network | None, list[str]]:
    """``text`` as a network: a CIDR with a prefix length and no host bits set."""
    if not isinstance(text, str) or "/" not in text:
        return None, [f"{at}: {text!r} is not a CIDR such as {example}"]
    try:
        return ipaddress.ip_network(text), []
    except ValueError as error:
        return None, [f"{at}: {text!r} is not a CIDR such as {example} ({error})"]


def _ip_block(block: Any, at: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{at}: must be an object with cidr (and except)"]
    problems = _unknown(block, IPBLOCK_KEYS, at)
    if block.get("cidr") is None:
        return [*problems, f"{at}.cidr: Required value: a CIDR such as 10.0.0.0/8"]
    cidr, bad = _network(block["cidr"], f"{at}.cidr", "10.0.0.0/8")
    excepts = block.get("except") or []
    if not isinstance(excepts, list):
        return [*problems, *bad, f"{at}.except: must be a list of CIDRs"]
    for j, text in enumerate(excepts):
        inner, wrong = _network(text, f"{at}.except[{j}]", "10.1.0.0/16")
        problems += (
            wrong if inner is None or cidr is None else _inside(inner, cidr, f"{at}.except[{j}]")
        )
    return problems + bad


def _inside(inner: Network, cidr: Network, at: str) -> list[str]:
    strict = inner.version == cidr.version and inner.prefixlen > cidr.prefixlen
    if strict and inner.subnet_of(cidr):  # type: ignore[arg-type]
        return []
    return [f"{at}: {inner} must lie strictly inside cidr {cidr}"]

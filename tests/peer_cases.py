"""ONE table of ``spec.networkPolicy.clientsFrom`` peers, shared by the unit tests (rendering
refuses the bad ones with the fragment) and the API-server tests (kube-apiserver refuses a
NetworkPolicy holding a bad one and stores one holding a good one): the two must agree."""

from __future__ import annotations

from typing import Any

Peer = Any

VALID: list[Peer] = [
    {"namespaceSelector": {}},
    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "client", "tier": ""}}},
    {
        "namespaceSelector": {
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b-1"]}]
        },
        "podSelector": {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]},
    },
    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.4/32"]}},
    {"ipBlock": {"cidr": "fd00::/8"}},
]

EXISTS_WITH_VALUE = {"key": "a", "operator": "Exists", "values": ["x"]}
# (peer, a fragment of the problem rendering reports)
INVALID: list[tuple[Peer, str]] = [
    ({}, "must set podSelector, namespaceSelector or ipBlock"),
    ({"podSelectr": {"matchLabels": {"app": "x"}}}, "podSelectr: unknown field"),
    ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "ipBlock may not be combined"),
    ({"ipBlock": {"except": ["10.1.0.0/16"]}}, "cidr: Required value"),
    ({"ipBlock": {"cidr": "bogus"}}, "'bogus' is not a CIDR"),
    ({"ipBlock": {"cidr": "10.0.0.0/33"}}, "'10.0.0.0/33' is not a CIDR"),
    ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}, "strictly inside cidr"),
    ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}, "strictly inside cidr"),
    ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/16"]}}, "strictly inside cidr"),
    ({"podSelector": {"matchLabels": {"bad key!": "x"}}}, "'bad key!' is not a label key"),
    ({"podSelector": {"matchLabels": {"Example.com/app": "x"}}}, "is not a label key"),
    ({"podSelector": {"matchLabels": {"app": "has space"}}}, "'has space' is not a label value"),
    ({"podSelector": {"matchLabels": {"app": "x" * 64}}}, "is not a label value"),
    (
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        "operator In needs at least one value",
    ),
    (
        {"podSelector": {"matchExpressions": [EXISTS_WITH_VALUE]}},
        "operator Exists takes no values",
    ),
    (
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is", "values": ["x"]}]}},
        "'Is' is not one of In, NotIn, Exists, DoesNotExist",
    ),
    ({"namespaceSelector": {"matchLabel": {"team": "a"}}}, "matchLabel: unknown field"),
]

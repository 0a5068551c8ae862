"""``spec.networkPolicy.clientsFrom`` peers that Kubernetes would refuse make the LLMService
Invalid at rendering, with the field and what to change (tests/peer_cases.py; the API server's
agreement is checked in e2e/test_security.py)."""

from __future__ import annotations

import pytest

from llmsvc.api import InvalidSpecError
from llmsvc.render import render
from tests.invalid_cases import setter
from tests.peer_cases import INVALID, VALID, Peer
from tests.render_helpers import kinds, svc_with


@pytest.mark.parametrize("router", [True, False])
@pytest.mark.parametrize("peer", VALID)
def test_valid_peers_are_rendered_as_given(peer: Peer, router: bool) -> None:
    svc = svc_with(
        setter("spec.networkPolicy.clientsFrom", [peer]), setter("spec.router.enabled", router)
    )
    front = "router" if router else "leaders"
    policy = next(
        p for p in kinds(render(svc), "NetworkPolicy") if p["metadata"]["name"].endswith(front)
    )
    assert peer in policy["spec"]["ingress"][0]["from"]


@pytest.mark.parametrize("router", [True, False])
@pytest.mark.parametrize(("peer", "fragment"), INVALID)
def test_invalid_peers_make_the_service_invalid(peer: Peer, fragment: str, router: bool) -> None:
    clients = [{"namespaceSelector": {}}, peer]
    svc = svc_with(
        setter("spec.networkPolicy.clientsFrom", clients), setter("spec.router.enabled", router)
    )
    with pytest.raises(InvalidSpecError) as error:
        render(svc)
    assert error.value.problems, "no problem reported"
    assert all(p.startswith("spec.networkPolicy.clientsFrom[1]") for p in error.value.problems)
    assert any(fragment in p for p in error.value.problems), error.value.problems


def test_every_problem_is_reported_at_once() -> None:
    peers = [{"ipBlock": {"cidr": "bogus"}}, {"podSelector": {"matchLabels": {"a": "b c"}}}]
    with pytest.raises(InvalidSpecError) as error:
        render(svc_with(setter("spec.networkPolicy.clientsFrom", peers)))
    assert [p.split(":")[0] for p in error.value.problems] == [
        "spec.networkPolicy.clientsFrom[0].ipBlock.cidr",
        "spec.networkPolicy.clientsFrom[1].podSelector.matchLabels[a]",
    ]


def test_peers_are_not_checked_when_network_policies_are_off() -> None:
    svc = svc_with(
        setter("spec.networkPolicy.enabled", False),
        setter("spec.networkPolicy.clientsFrom", [{"ipBlock": {"cidr": "bogus"}}]),
    )
    assert not kinds(render(svc), "NetworkPolicy")

"""Group health from its pods and remembered ranks: which states are Ready, Starting, Pending,
Broken, and which pods count as ranks at all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from llmsvc.plan.groups import GroupView, group_views
from llmsvc.plan.pods import pod_facts
from tests.plan.fixtures import OWNERS, facts, healthy_group, pod

STARTED = frozenset({"pod-0-0", "pod-0-1"})  # the ranks the operator saw start together


def view(
    pods: list[dict[str, Any]],
    expected: int = 2,
    revision: str = "rev1",
    members: frozenset[str] = frozenset(),
) -> GroupView:
    return group_views(facts(pods), expected, {0: revision}, [0], {0: members})[0]


CASES = [
    ("all ranks ready", healthy_group(0), "Ready", ""),
    ("no pods yet", [], "Starting", ""),
    ("one rank still loading", [pod(0, 0, ready=False), pod(0, 1)], "Starting", ""),
    (
        "a rank failed",
        [pod(0, 0), pod(0, 1, phase="Failed", ready=False)],
        "Broken",
        "a rank failed",
    ),
    (
        "a container restarted",
        [pod(0, 0, restarts=1), pod(0, 1)],
        "Broken",
        "a rank's container restarted",
    ),
    (
        "a remembered rank is being deleted",
        [pod(0, 0), pod(0, 1, terminating=True)],
        "Broken",
        "a rank was deleted",
    ),
    (
        "a remembered rank was replaced, however soon (same creation second)",
        [pod(0, 0), pod(0, 1, uid="new")],
        "Broken",
        "a rank was replaced",
    ),
    (
        "a remembered rank is gone",
        [pod(0, 0)],
        "Broken",
        "a rank was replaced",
    ),
    (
        "a remembered rank's replacement is still pending",
        [pod(0, 0), pod(0, 1, uid="new", phase="Pending", ready=False)],
        "Broken",
        "a rank was replaced",
    ),
    (
        "ranks started far apart but never replaced",
        [pod(0, 0), pod(0, 1, created=timedelta(seconds=40))],
        "Ready",
        "",
    ),
    (
        "every remembered rank replaced at once: a new world, not broken",
        [pod(0, 0, uid="new-0"), pod(0, 1, uid="new-1", created=timedelta(seconds=9))],
        "Ready",
        "",
    ),
    (
        "the old world terminating while the new one starts",
        [pod(0, 0, uid="new-0"), pod(0, 1, terminating=True), pod(0, 0, terminating=True)],
        "Starting",
        "",
    ),
    (
        "unschedulable rank",
        [pod(0, 0), pod(0, 1, unschedulable="0/5 nodes are available")],
        "Pending",
        "",
    ),
    ("whole group terminating", healthy_group(0, terminating=True), "Terminating", ""),
]


@pytest.mark.parametrize(
    ("pods", "health", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_group_health(pods: list[dict[str, Any]], health: str, reason: str) -> None:
    v = view(pods, members=STARTED)
    assert v.health() == health
    assert v.broken_reason() == reason


def test_unschedulable_message_is_the_schedulers() -> None:
    v = view([pod(0, 0), pod(0, 1, unschedulable="0/5 nodes: Insufficient nvidia.com/gpu")])
    assert v.unschedulable == "0/5 nodes: Insufficient nvidia.com/gpu"


def test_outdated_when_a_rank_runs_an_older_revision() -> None:
    assert view(healthy_group(0, revision="old"), revision="new").outdated
    assert not view(healthy_group(0), revision="rev1").outdated
    assert not view(healthy_group(0), revision="").outdated


def test_a_new_group_missing_a_rank_is_starting() -> None:
    v = view([pod(0, 0)])
    assert (v.health(), v.broken_reason()) == ("Starting", "")
    assert v.remembered() == ("pod-0-0",)


def test_ranks_unknown_so_far_join_the_remembered_set() -> None:
    v = view([pod(0, 0), pod(0, 1, created=timedelta(seconds=30))], members=frozenset({"pod-0-0"}))
    assert v.health() == "Ready"
    assert v.remembered() == ("pod-0-0", "pod-0-1")


def test_a_broken_world_keeps_its_members_until_restarted() -> None:
    v = view([pod(0, 0), pod(0, 1, uid="new")], members=STARTED)
    assert v.remembered() == ("pod-0-0", "pod-0-1")


def test_terminating_pods_are_never_remembered() -> None:
    v = view([pod(0, 0, uid="new-0"), pod(0, 1, terminating=True)])
    assert v.remembered() == ("new-0",)


def foreign(labels: dict[str, str], owner_uid: str | None) -> dict[str, Any]:
    p = pod(0, 0, uid="stray")
    p["metadata"]["labels"] = labels
    if owner_uid is None:
        del p["metadata"]["ownerReferences"]
    else:
        p["metadata"]["ownerReferences"][0]["uid"] = owner_uid
    return p


FOREIGN = [
    ("debug pod with a non-numeric group", {"llmsvc.io/name": "llama", "llmsvc.io/group": "debug"}),
    ("pod claiming group 0 by label", {"llmsvc.io/name": "llama", "llmsvc.io/group": "0"}),
    ("pod with an empty group label", {"llmsvc.io/name": "llama", "llmsvc.io/group": ""}),
]


@pytest.mark.parametrize("labels", [f[1] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
@pytest.mark.parametrize("owner", [None, "uid-someone-else"])
def test_pods_not_controlled_by_a_group_are_not_ranks(
    labels: dict[str, str], owner: str | None
) -> None:
    assert pod_facts(foreign(labels, owner), OWNERS) is None


def test_ownership_not_labels_says_which_group_a_pod_is_in() -> None:
    mislabelled = foreign({"llmsvc.io/group": "debug"}, "uid-llama-1")
    fact = pod_facts(mislabelled, OWNERS)
    assert fact is not None
    assert fact.group == 1


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"ownerReferences": None},
        {"ownerReferences": ["not-a-dict"]},
        {"ownerReferences": [{"uid": "uid-llama-0"}]},  # an owner, but not the controller
    ],
)
def test_malformed_metadata_is_ignored(meta: dict[str, Any]) -> None:
    assert pod_facts({"kind": "Pod", "metadata": meta}, OWNERS) is None


def test_views_split_pods_by_group() -> None:
    pods = healthy_group(0) + healthy_group(1) + healthy_group(5)
    views = group_views(facts(pods), 2, {}, [0, 1])
    assert [len(v.pods) for v in views] == [2, 2]
    assert [p.name for p in views[1].pods] == ["llama-1-0", "llama-1-1"]

"""One Created (and one Deleted) Event per pass: llmsvc.plan.events.merged and its cap."""

from __future__ import annotations

import pytest

from llmsvc.plan import Event, merged, plan
from llmsvc.plan.events import MAX_MESSAGE, listing
from llmsvc.render import render
from tests.plan.fixtures import T0, service
from tests.plan.test_planner import POLICY

C = "Created"


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], []),
        (
            [Event("Normal", C, "created StatefulSet a"), Event("Normal", C, "created Service b")],
            [Event("Normal", C, "created StatefulSet a, Service b")],
        ),
        (  # other reasons keep their place; the merged one sits where its first part was
            [
                Event("Warning", "GroupRestarted", "restarted group 0"),
                Event("Normal", C, "created StatefulSet a"),
                Event("Normal", "Deleted", "deleted Service x"),
                Event("Normal", C, "created Service b"),
                Event("Normal", "Deleted", "deleted Service y"),
            ],
            [
                Event("Warning", "GroupRestarted", "restarted group 0"),
                Event("Normal", C, "created StatefulSet a, Service b"),
                Event("Normal", "Deleted", "deleted Service x, Service y"),
            ],
        ),
        (  # rare reasons are never merged, even when repeated
            [Event("Warning", "NameConflict", "a"), Event("Warning", "NameConflict", "b")],
            [Event("Warning", "NameConflict", "a"), Event("Warning", "NameConflict", "b")],
        ),
        (  # a message that does not follow the pattern is left alone
            [Event("Normal", C, "something else"), Event("Normal", C, "created Service b")],
            [Event("Normal", C, "something else"), Event("Normal", C, "created Service b")],
        ),
    ],
)
def test_merged(events: list[Event], expected: list[Event]) -> None:
    assert merged(events) == expected


def test_a_long_listing_is_capped_and_counts_the_rest() -> None:
    items = [f"StatefulSet very-long-service-name-{i:03d}" for i in range(100)]
    text = listing("created ", items)
    assert len(text) <= MAX_MESSAGE
    assert text.startswith("created StatefulSet very-long-service-name-000, ")
    shown = text.removeprefix("created ").split(" and ")[0].split(", ")
    assert text.endswith(f" and {100 - len(shown)} more")
    assert shown == items[: len(shown)]
    assert len(shown) > 10


def test_a_first_pass_posts_one_created_event_naming_every_new_child() -> None:
    svc = service()
    todo = plan(svc, render(svc), live={}, pods=[], now=T0, policy=POLICY)
    events = merged(todo.events)
    assert [e.reason for e in events] == ["Created"]
    assert len(todo.events) == len(todo.apply) > 5  # the planner still knows each one
    for child in todo.apply:
        assert f"{child['kind']} {child['metadata']['name']}" in events[0].message

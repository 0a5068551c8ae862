"""The Events of one pass as they are posted: one per kind of news, not one per child.

A first pass creates about nine children; one ``Created`` Event each made Events almost half of
the operator's writes (issue #16). :func:`merged` folds every ``Created`` (and ``Deleted``) Event
of a pass into one whose message lists the objects, capped at :data:`MAX_MESSAGE` characters
(``... and N more``), so ``kubectl describe`` still names what changed. Other Events (restarts,
rejections, conflicts) stay one each: they are rare and each says something different.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmsvc.plan.planner import Event

MAX_MESSAGE = 1024  # events.k8s.io refuses longer notes; core/v1 shows them badly
MERGED = {"Created": "created ", "Deleted": "deleted "}  # reason -> message prefix


def merged(events: Sequence[Event]) -> list[Event]:
    """``events`` with each mergeable reason folded into its first Event, order otherwise kept."""
    out: list[Event] = []
    where: dict[tuple[str, str], int] = {}  # (type, reason) -> index in out
    items: dict[tuple[str, str], list[str]] = {}
    for event in events:
        prefix = MERGED.get(event.reason, "")
        if not prefix or not event.message.startswith(prefix):
            out.append(event)
            continue
        kind = (event.type, event.reason)
        if kind not in where:
            where[kind], items[kind] = len(out), []
            out.append(event)
        items[kind].append(event.message.removeprefix(prefix))
    for (type_, reason), index in where.items():
        out[index] = Event(type_, reason, listing(MERGED[reason], items[(type_, reason)]))
    return out


def listing(prefix: str, items: Sequence[str], limit: int = MAX_MESSAGE) -> str:
    """``prefix`` and ``items`` joined by commas, in ``limit`` characters (the rest counted)."""
    text = prefix + ", ".join(items)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    for item in items:
        rest = len(items) - len(kept) - 1
        if len(prefix + ", ".join([*kept, item]) + f" and {rest} more") > limit:
            break
        kept.append(item)
    return f"{prefix}{', '.join(kept)} and {len(items) - len(kept)} more"

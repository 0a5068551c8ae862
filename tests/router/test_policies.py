"""Policies: table tests of single decisions and property tests of spread and stability."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.router.policies import Endpoint, RequestInfo, Snapshot, make_policy
from llmsvc.router.policies.prefix_aware import PrefixAware, prompt_blocks
from llmsvc.router.policies.round_robin import RoundRobin
from llmsvc.router.policies.session import Ring, SessionAffinity

URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]


def snap(
    loads: dict[str, int] | None = None, down: set[str] | frozenset[str] = frozenset()
) -> Snapshot:
    loads = loads or {}
    return Snapshot.of([Endpoint(u, loads.get(u, 0), u not in down) for u in URLS])


@pytest.mark.parametrize("name", ["round-robin", "least-request", "prefix-aware", "session"])
def test_every_policy_returns_none_when_nothing_is_eligible(name: str) -> None:
    policy = make_policy(name)
    assert policy.pick(snap(down=set(URLS)), RequestInfo("p", "s")) is None
    assert policy.pick(Snapshot(()), RequestInfo("p", "s")) is None


@pytest.mark.parametrize("name", ["round-robin", "least-request", "prefix-aware", "session"])
def test_every_policy_skips_ineligible_endpoints(name: str) -> None:
    policy = make_policy(name)
    down = set(URLS[:3])
    for i in range(20):
        chosen = policy.pick(snap(down=down), RequestInfo(f"prompt {i}" * 40, f"s{i}"))
        assert chosen is not None
        assert chosen.url == URLS[3]


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="round-robin, least-request, prefix-aware, session"):
        make_policy("random")


def test_round_robin_cycles_in_url_order() -> None:
    policy = RoundRobin()
    picks = [policy.pick(snap(), RequestInfo()) for _ in range(8)]
    assert [p.url for p in picks if p] == URLS + URLS


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        ({URLS[0]: 3, URLS[1]: 1, URLS[2]: 2, URLS[3]: 5}, URLS[1]),
        ({URLS[0]: 0, URLS[1]: 9, URLS[2]: 9, URLS[3]: 9}, URLS[0]),
        ({URLS[0]: 7, URLS[1]: 7, URLS[2]: 7, URLS[3]: 6}, URLS[3]),
    ],
    ids=["lowest-wins", "idle-wins", "last-wins"],
)
def test_least_request_picks_the_fewest_in_flight(loads: dict[str, int], expected: str) -> None:
    chosen = make_policy("least-request").pick(snap(loads), RequestInfo())
    assert chosen is not None
    assert chosen.url == expected


def test_least_request_rotates_between_ties() -> None:
    policy = make_policy("least-request")
    picks = Counter(p.url for _ in range(40) if (p := policy.pick(snap(), RequestInfo())))
    assert set(picks.values()) == {10}


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 8), rounds=st.integers(1, 30))
def test_round_robin_spread_is_within_one(n: int, rounds: int) -> None:
    endpoints = Snapshot.of([Endpoint(f"http://h{i}:1") for i in range(n)])
    policy = RoundRobin()
    counts = Counter(p.url for _ in range(rounds) if (p := policy.pick(endpoints, RequestInfo())))
    assert max(counts.values()) - min(counts.get(e.url, 0) for e in endpoints.endpoints) <= 1


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 8), total=st.integers(1, 200))
def test_least_request_keeps_loads_within_one(n: int, total: int) -> None:
    """Without completions, least-request fills backends evenly."""
    loads = {f"http://h{i}:1": 0 for i in range(n)}
    policy = make_policy("least-request")
    for _ in range(total):
        chosen = policy.pick(Snapshot.of([Endpoint(u, c) for u, c in loads.items()]), RequestInfo())
        assert chosen is not None
        loads[chosen.url] += 1
    assert max(loads.values()) - min(loads.values()) <= 1


# --- session -----------------------------------------------------------------------------


def test_session_sticks_to_one_backend() -> None:
    policy = SessionAffinity()
    picks = {p.url for _ in range(20) if (p := policy.pick(snap(), RequestInfo(session="alice")))}
    assert len(picks) == 1


def test_session_falls_back_along_the_ring_and_returns_when_healthy() -> None:
    policy = SessionAffinity()
    home = policy.pick(snap(), RequestInfo(session="bob"))
    assert home is not None
    moved = policy.pick(snap(down={home.url}), RequestInfo(session="bob"))
    assert moved is not None
    assert moved.url != home.url
    back = policy.pick(snap(), RequestInfo(session="bob"))
    assert back is not None
    assert back.url == home.url


def test_session_without_key_uses_least_request() -> None:
    chosen = SessionAffinity().pick(
        snap({URLS[0]: 5, URLS[1]: 5, URLS[2]: 0, URLS[3]: 5}), RequestInfo()
    )
    assert chosen is not None
    assert chosen.url == URLS[2]


def test_ring_is_the_same_in_every_process() -> None:
    """A fixed key maps to a fixed URL: hashing does not depend on PYTHONHASHSEED."""
    ring = Ring(frozenset(URLS), 160)
    assert next(ring.walk("session-42")) == next(
        Ring(frozenset(reversed(URLS)), 160).walk("session-42")
    )
    assert list(ring.walk("k"))
    assert len(set(ring.walk("k"))) == len(URLS)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 10), removed=st.integers(0, 9))
def test_ring_removal_moves_only_the_removed_backends_keys(n: int, removed: int) -> None:
    urls = [f"http://10.1.0.{i}:8000" for i in range(n)]
    gone = urls[removed % n]
    before = Ring(frozenset(urls), 160)
    after = Ring(frozenset(urls) - {gone}, 160)
    keys = [f"user-{i}" for i in range(400)]
    for key in keys:
        old, new = next(before.walk(key)), next(after.walk(key))
        assert old in (new, gone)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 10))
def test_ring_addition_moves_about_one_nth_of_keys(n: int) -> None:
    urls = [f"http://10.2.0.{i}:8000" for i in range(n)]
    before = Ring(frozenset(urls), 160)
    after = Ring(frozenset([*urls, "http://10.2.0.99:8000"]), 160)
    keys = [f"user-{i}" for i in range(2000)]
    moved = sum(next(before.walk(k)) != next(after.walk(k)) for k in keys)
    assert moved / len(keys) < 2.0 / (n + 1)
    assert all(
        next(after.walk(k)) == "http://10.2.0.99:8000"
        for k in keys
        if next(before.walk(k)) != next(after.walk(k))
    )


def test_ring_spreads_sessions_evenly() -> None:
    ring = Ring(frozenset(URLS), 160)
    counts = Counter(next(ring.walk(f"s{i}")) for i in range(8000))
    assert min(counts.values()) > 0.7 * 2000
    assert max(counts.values()) < 1.3 * 2000


# --- prefix-aware ------------------------------------------------------------------------

SYSTEM = "You are a careful assistant. " * 40


def test_prompt_blocks_are_chained_and_only_full() -> None:
    a = prompt_blocks("x" * 300, 128, 100)
    b = prompt_blocks("x" * 256 + "y" * 44, 128, 100)
    assert len(a) == 2
    assert a == b
    assert prompt_blocks("y" + "x" * 299, 128, 100)[1] != a[1]
    assert len(prompt_blocks("z" * 10_000, 128, 5)) == 5


def test_prefix_aware_returns_to_the_backend_holding_the_prefix() -> None:
    policy = PrefixAware()
    first = policy.pick(snap(), RequestInfo(SYSTEM + "tenant A question 1"))
    assert first is not None
    again = policy.pick(snap({first.url: 1}), RequestInfo(SYSTEM + "tenant A question 2"))
    assert again is not None
    assert again.url == first.url


def test_prefix_aware_prefers_the_longest_match() -> None:
    policy = PrefixAware(balance_slack=100)
    history_a = SYSTEM + "conversation A " * 50
    history_b = SYSTEM + "conversation B " * 50
    a = policy.pick(snap(), RequestInfo(history_a))
    assert a is not None
    b = policy.pick(snap(down={a.url}), RequestInfo(history_b))
    assert b is not None
    assert b.url != a.url
    for _ in range(3):
        follow_b = policy.pick(snap(), RequestInfo(history_b + " next turn"))
        follow_a = policy.pick(snap(), RequestInfo(history_a + " next turn"))
        assert follow_b is not None
        assert follow_b.url == b.url
        assert follow_a is not None
        assert follow_a.url == a.url


def test_prefix_aware_leaves_an_overloaded_backend() -> None:
    policy = PrefixAware(balance_factor=1.5, balance_slack=2)
    home = policy.pick(snap(), RequestInfo(SYSTEM))
    assert home is not None
    chosen = policy.pick(snap({home.url: 10}), RequestInfo(SYSTEM))
    assert chosen is not None
    assert chosen.url != home.url


@pytest.mark.parametrize(
    ("loads", "bound"),
    [([0, 0, 0, 0], 8), ([4, 4, 4, 4], 12), ([10, 0, 0, 0], 8), ([1], 9), ([40, 40], 61)],
)
def test_prefix_aware_load_bound(loads: list[int], bound: int) -> None:
    endpoints = [Endpoint(f"http://h{i}:1", load) for i, load in enumerate(loads)]
    assert PrefixAware().load_bound(endpoints) == bound


def test_a_shared_system_prompt_cannot_pull_everything_to_one_backend() -> None:
    """All requests share one long prefix; with loads that never drop, they still spread."""
    policy = PrefixAware()
    loads = dict.fromkeys(URLS, 0)
    for i in range(200):
        chosen = policy.pick(snap(loads), RequestInfo(SYSTEM + f"user {i}"))
        assert chosen is not None
        loads[chosen.url] += 1
    assert max(loads.values()) <= 1.5 * (200 / 4) + 2


@settings(max_examples=30, deadline=None)
@given(
    prompts=st.lists(st.sampled_from(["A", "B", "C", "D", "E", "F"]), min_size=1, max_size=120),
    n=st.integers(1, 6),
)
def test_prefix_aware_load_never_exceeds_the_bound(prompts: list[str], n: int) -> None:
    urls = [f"http://h{i}:1" for i in range(n)]
    loads = dict.fromkeys(urls, 0)
    policy = PrefixAware()
    for tenant in prompts:
        endpoints = [Endpoint(u, c) for u, c in loads.items()]
        bound = policy.load_bound(endpoints)
        chosen = policy.pick(Snapshot.of(endpoints), RequestInfo(tenant * 600))
        assert chosen is not None
        assert chosen.in_flight < bound
        loads[chosen.url] += 1


def test_prefix_aware_history_is_bounded() -> None:
    policy = PrefixAware(history_blocks=10)
    for i in range(50):
        policy.pick(snap(), RequestInfo(f"tenant {i} " * 200))
    assert all(policy.remembered(u) <= 10 for u in URLS)

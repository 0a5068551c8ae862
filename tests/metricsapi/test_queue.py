"""The pure queue arithmetic: parsing scrapes, summing targets, stale and missing data."""

from __future__ import annotations

import pytest

from llmsvc.metricsapi.queue import (
    Reading,
    Sample,
    Target,
    parse_gauge,
    parse_sample,
    quantity,
    service_queue,
)

ROUTER = Target("router", "demo-router-a", "http://10.0.0.1:8000/metrics")
LEADER_0 = Target("engine", "demo-0-0", "http://10.0.0.2:8000/metrics")
LEADER_1 = Target("engine", "demo-1-0", "http://10.0.0.3:8000/metrics")
NOW = 1000.0
MAX_AGE = 5.0

VLLM = """\
# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting_extra 99
vllm:num_requests_running{engine="0",model_name="m"} 2.0
"""


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        (VLLM, "vllm:num_requests_waiting", 3.0),
        (VLLM, "vllm:num_requests_running", 2.0),
        (VLLM, "vllm:kv_cache_usage_perc", None),
        ("llmsvc_router_queue_length 4.0\n", "llmsvc_router_queue_length", 4.0),
        ('m{a="1"} 1\nm{a="2"} 2.5\n', "m", 3.5),
        ('m{a="}"} 7\n', "m", 7.0),
        ("m NaN\n", "m", None),
        ("m notanumber\n", "m", None),
        ("# m 5\n", "m", None),
        ("", "m", None),
    ],
)
def test_parse_gauge(text: str, name: str, expected: float | None) -> None:
    assert parse_gauge(text, name) == expected


def test_parse_sample_reads_the_queue_and_the_active_requests_per_kind() -> None:
    assert parse_sample(LEADER_0, VLLM, NOW) == Sample(NOW, 3.0, 2.0)
    router_text = 'llmsvc_router_queue_length 1\nllmsvc_router_backend_in_flight{backend="x"} 4\n'
    assert parse_sample(ROUTER, router_text, NOW) == Sample(NOW, 1.0, 4.0)


FRESH = Sample(NOW - 1, 2.0, 1.0)
CASES = [
    # (targets, samples by URL, router expected, value, missing reasons contain)
    ([ROUTER, LEADER_0], {ROUTER.url: FRESH, LEADER_0.url: Sample(NOW, 3.0)}, True, 5.0, ""),
    ([ROUTER], {ROUTER.url: Sample(NOW, 0.0)}, True, 0.0, ""),  # scaled to zero: router only
    ([LEADER_0, LEADER_1], {LEADER_0.url: FRESH, LEADER_1.url: FRESH}, False, 4.0, ""),
    ([ROUTER, LEADER_0], {ROUTER.url: FRESH}, True, None, "demo-0-0: not scraped yet"),
    (
        [ROUTER, LEADER_0],
        {ROUTER.url: Sample(NOW - 9, 0.0), LEADER_0.url: FRESH},
        True,
        None,
        "demo-router-a: last scrape 9 s ago",
    ),
    (
        [ROUTER],
        {ROUTER.url: Sample(NOW, None, 0.0, "scrape failed (ClientConnectorError)")},
        True,
        None,
        "scrape failed",
    ),
    ([ROUTER], {ROUTER.url: Sample(NOW, None)}, True, None, "no llmsvc_router_queue_length"),
    ([LEADER_0], {LEADER_0.url: FRESH}, True, None, "no ready router pod"),
    ([], {}, True, None, "no ready router pod"),
    ([], {}, False, 0.0, ""),  # no router, no replicas: nothing queues anywhere
]


@pytest.mark.parametrize(("targets", "samples", "router", "value", "why"), CASES)
def test_service_queue(
    targets: list[Target], samples: dict[str, Sample], router: bool, value: float | None, why: str
) -> None:
    reading = service_queue(targets, samples, NOW, MAX_AGE, router)
    assert reading.value == value
    if value is None:
        assert any(why in reason for reason in reading.missing), reading.missing
    else:
        assert reading.missing == ()


def test_a_missing_reading_is_never_idle_and_a_fresh_one_reports_active_requests() -> None:
    busy = service_queue([ROUTER], {ROUTER.url: Sample(NOW, 0.0, 2.0)}, NOW, MAX_AGE, True)
    assert (busy.value, busy.active, busy.idle) == (0.0, 2.0, False)
    assert Reading(None, NOW, ("gone",)).idle is False
    assert Reading(0.0, NOW).idle is True


@pytest.mark.parametrize(("value", "text"), [(0.0, "0"), (12.0, "12"), (1.5, "1500m")])
def test_quantity(value: float, text: str) -> None:
    assert quantity(value) == text

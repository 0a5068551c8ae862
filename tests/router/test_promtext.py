"""The /metrics reader: real exposition shapes, data-parallel sums, hostile and malformed bodies."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from llmsvc.router.promtext import EngineLoad, LoadParser, MetricsError
from llmsvc.sim.engine import Engine, SimConfig
from llmsvc.sim.metrics import EngineCollector

VLLM = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# TYPE vllm:num_requests_running_created gauge
vllm:num_requests_running_created{engine="0",model_name="m"} 1.7e9
vllm:prompt_tokens_total{engine="0",model_name="m"} 99999.0
"""


def parse(body: bytes, chunk: int | None = None, max_line: int = 65536) -> EngineLoad:
    """Parse ``body`` fed in pieces of ``chunk`` bytes (all at once when ``None``)."""
    parser = LoadParser(max_line)
    step = chunk or max(1, len(body))
    for start in range(0, len(body), step):
        parser.feed(body[start : start + step])
    return parser.result()


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_vllm_exposition_sums_engines_whatever_the_chunking(chunk: int | None) -> None:
    load = parse(VLLM, chunk)
    assert load == EngineLoad(running=5, waiting=1, kv_usage=0.5)
    assert load.requests == 6


def test_the_simulators_own_exposition_parses() -> None:
    engine = Engine(SimConfig(model="sim"))
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    assert parse(generate_latest(registry)) == EngineLoad(0, 0, 0.0)


def test_labels_with_braces_quotes_spaces_and_a_timestamp() -> None:
    body = (
        b'vllm:num_requests_running{model_name="a} b\\" {c=\\"d\\"}",engine="0"} 4 1700000000000\n'
        b"vllm:num_requests_waiting 2\r\n"
        b"vllm:kv_cache_usage_perc\t0.1"  # no final newline
    )
    assert parse(body) == EngineLoad(running=4, waiting=2, kv_usage=0.1)


def test_kv_usage_is_optional_and_capped_at_one() -> None:
    assert parse(b"vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n").kv_usage == 0.0
    body = b"vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 1\n"
    assert parse(body).kv_usage == 1.0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "no vllm:num_requests_running"),
        (b"vllm:num_requests_running 1\n", "no vllm:num_requests_waiting"),
        (b'{"object": "list"}', "no vllm:num_requests_running"),
        (b"<html>vllm:num_requests_running</html>", "no vllm:num_requests_running"),
        (b"vllm:num_requests_running\n", "expected a value"),
        (b"vllm:num_requests_running 1 2 3\n", "expected a value"),
        (b"vllm:num_requests_running one\n", "not a number"),
        (b"vllm:num_requests_running NaN\n", "not a plausible load"),
        (b"vllm:num_requests_running +Inf\n", "not a plausible load"),
        (b"vllm:num_requests_running -1\n", "not a plausible load"),
        (b"vllm:num_requests_running 1e300\n", "not a plausible load"),
        (b'vllm:num_requests_running{engine="0" 1\n', "label set is not closed"),
        (b'vllm:num_requests_running{engine="0} 1\n', "label set is not closed"),
        (b"vllm:num_requests_running \xff\xfe\n", "not a number"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(MetricsError, match=says):
        parse(body)


def test_a_line_over_the_limit_fails_before_it_is_held_whole() -> None:
    parser = LoadParser(max_line=1024)
    parser.feed(b"vllm:num_requests_running 1\n")
    for _ in range(10):
        parser.feed(b"x" * 100)  # never a newline: 1000 bytes held
    with pytest.raises(MetricsError, match="a line is over 1024 bytes"):
        parser.feed(b"x" * 100)


def test_the_message_never_quotes_the_body() -> None:
    secret = b"sk-canary-secret"
    with pytest.raises(MetricsError) as caught:
        parse(b"vllm:num_requests_running " + secret + b"\n")
    assert b"canary" not in str(caught.value).encode()


def test_hostile_bodies_parse_in_linear_time() -> None:
    unclosed = b'vllm:num_requests_running{a="' + b'\\"' * 30000 + b"\n"
    braces = b"vllm:num_requests_running{" + b"a" * 60000 + b"\n"
    many = b"vllm:num_requests_waiting 0\n" * 150_000
    blank = b"\n" * 4_000_000
    other = b"vllm:other 1\n" * 300_000
    started = time.monotonic()
    for body in (unclosed, braces):
        with pytest.raises(MetricsError, match="not closed"):
            parse(body)
    with pytest.raises(MetricsError, match="over 4096 series"):
        parse(many, chunk=65536)
    for body in (blank, other):
        with pytest.raises(MetricsError, match="no vllm:num_requests_running"):
            parse(body, chunk=65536)
    assert time.monotonic() - started < 2.0

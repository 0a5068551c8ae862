"""The LLMService models: valid manifests parse with their defaults; every invalid case is refused
with its message at its field path (the same table the API-server tests apply)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmsvc.api import InvalidSpecError, LLMService, parse
from llmsvc.api.rules import (
    ABBREV_MIN,
    ARGS_BYTES_MAX,
    MAX_ARG_LENGTH,
    MAX_NAME_LENGTH,
    MAX_REPLICAS,
    OWNED_FLAGS,
    RESERVED_ENV,
    owned_flag,
)
from llmsvc.puller.layout import BadURIError, parse_uri
from tests.invalid_cases import INVALID_CASES, Case, base_manifest, setter


def test_base_manifest_parses_with_defaults() -> None:
    svc = parse(base_manifest())
    spec = svc.spec
    assert isinstance(svc, LLMService)
    assert (svc.name, svc.namespace, svc.served_name) == ("invalid-case", "default", "qwen")
    assert spec.replicas == 1
    assert spec.engine.image == "vllm/vllm-openai:v0.32.0"
    assert spec.engine.gpu_memory_utilization == 0.9
    assert (spec.parallelism.backend, spec.parallelism.nodes) == ("native", 1)
    assert (spec.router.enabled, spec.router.replicas, spec.router.policy) == (
        True,
        1,
        "least-request",
    )
    assert (spec.autoscaling.enabled, spec.autoscaling.min_replicas) == (False, 1)
    assert (spec.autoscaling.max_replicas, spec.autoscaling.target_queue_length) == (4, 5)
    assert spec.startup.timeout_seconds == 1800
    assert spec.restart.max_group_restarts == 5
    assert spec.cache.size is None


def test_served_name_defaults_to_metadata_name() -> None:
    manifest = base_manifest()
    del manifest["spec"]["model"]["servedName"]
    assert parse(manifest).served_name == "invalid-case"


def test_nodes_per_replica() -> None:
    manifest = base_manifest()
    setter("spec.parallelism", {"tensor": 8, "pipeline": 2, "gpusPerNode": 8})(manifest)
    assert parse(manifest).spec.parallelism.nodes == 2


def test_wire_round_trip_is_camel_case() -> None:
    svc = parse(base_manifest())
    wire = svc.spec.wire()
    assert wire["engine"]["maxModelLen"] == 4096
    assert wire["parallelism"]["gpusPerNode"] == 1
    assert parse({**base_manifest(), "spec": wire}).spec == svc.spec


def test_name_at_the_limit_is_accepted() -> None:
    manifest = base_manifest()
    manifest["metadata"]["name"] = "a" * MAX_NAME_LENGTH
    assert parse(manifest).name == "a" * MAX_NAME_LENGTH


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_case_is_rejected_with_message_and_path(case: Case) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse(case.manifest())
    problems = caught.value.problems
    matching = [p for p in problems if case.message in p]
    assert matching, f"{case.id}: {case.message!r} not in {problems}"
    assert any(p.startswith(f"{case.path}: ") for p in matching), problems


def test_case_ids_are_unique_and_manifests_fresh() -> None:
    ids = [case.id for case in INVALID_CASES]
    assert len(ids) == len(set(ids))
    first = INVALID_CASES[0]
    first.manifest()["spec"]["replicas"] = 99
    assert "replicas" not in first.manifest()["spec"]


def test_every_problem_line_names_a_field_and_what_to_change() -> None:
    manifest = base_manifest()
    setter("spec.parallelism", {"tensor": 3, "gpusPerNode": 8})(manifest)
    setter("spec.autoscaling", {"minReplicas": 9, "maxReplicas": 2})(manifest)
    with pytest.raises(InvalidSpecError) as caught:
        parse(manifest)
    problems = caught.value.problems
    assert len(problems) == 2
    assert all(re.match(r"^spec\.\w+: ", line) for line in problems)
    assert "set gpusPerNode" in problems[0] or "set gpusPerNode" in problems[1]


def test_wrong_kind_is_reported_at_root() -> None:
    manifest = base_manifest()
    manifest["kind"] = "Deployment"
    with pytest.raises(InvalidSpecError, match=r"\(root\): expected apiVersion"):
        parse(manifest)


def test_owned_flag_matches_with_and_without_value() -> None:
    assert owned_flag("--port=8080") == "--port"
    assert owned_flag("--port") == "--port"
    assert owned_flag("--portable") is None
    assert owned_flag("--enable-prefix-caching") is None


@pytest.mark.parametrize(
    ("arg", "flag"),
    [
        ("--tensor_parallel_size=8", "--tensor-parallel-size"),
        ("--served_model_name", "--served-model-name"),
        ("--max_model_len=1", "--max-model-len"),
        ("--master_addr=evil", "--master-addr"),
        ("--tensor-parallel", "--tensor-parallel-size"),
        ("--max-model=2", "--max-model-len"),
        ("--hea", "--headless"),
        ("-tp=4", "-tp"),
        ("-t", "-tp"),
        ("-n2", "-n"),
        ("-r=1", "-r"),
        ("--port=8000\n--x", "--port"),
    ],
)
def test_owned_flag_in_every_spelling_vllm_reads(arg: str, flag: str) -> None:
    assert owned_flag(arg) == flag


# Real vLLM flags users pass: none of them may be caught by the owned-flag rule.
USER_FLAGS = [
    "--enable-prefix-caching",
    "--max-num-seqs=8",
    "--max_num_batched_tokens=8192",
    "--trust-remote-code",
    "--dtype=half",
    "--model-impl=transformers",
    "--kv-cache-dtype=fp8",
    "-q=awq",
    "-O3",
    "-dp=2",
    "--data-parallel-size=2",
    "--enforce-eager",
    "--hf-overrides={}",
    "--tokenizer=org/tok",
    "--chat-template=/x.jinja",
    "--disable-log-requests",
    "--enable-auto-tool-choice",
    "--tool-call-parser=hermes",
    "--swap-space=4",
]


@pytest.mark.parametrize("arg", USER_FLAGS)
def test_user_flags_are_not_owned(arg: str) -> None:
    assert owned_flag(arg) is None, arg
    manifest = base_manifest()
    setter("spec.engine.args", [arg])(manifest)
    assert parse(manifest).spec.engine.args == [arg]


@given(st.sampled_from([f for f in OWNED_FLAGS if f.startswith("--")]), st.data())
def test_any_underscore_spelling_or_abbreviation_is_owned(flag: str, data: st.DataObject) -> None:
    body = flag[2:]
    cut = data.draw(st.integers(min_value=ABBREV_MIN, max_value=len(body)))
    chars = [c if c != "-" else data.draw(st.sampled_from("-_")) for c in body[:cut]]
    value = data.draw(st.one_of(st.just(""), st.text(max_size=8).map(lambda v: "=" + v)))
    found = owned_flag("--" + "".join(chars) + value)
    assert found is not None
    assert found.startswith("--" + body[:cut])  # an abbreviation may be another owned flag


def test_the_byte_budget_counts_utf8_bytes_and_nuls() -> None:
    manifest = base_manifest()
    fits = ["a" * MAX_ARG_LENGTH] * (ARGS_BYTES_MAX // (MAX_ARG_LENGTH + 1))
    setter("spec.engine.args", fits)(manifest)
    assert len(parse(manifest).spec.engine.args) == len(fits)


def test_reserved_env_names_may_be_set_by_other_spellings_only_if_distinct() -> None:
    manifest = base_manifest()
    setter("spec.engine.env", [{"name": "master_addr", "value": "x"}])(manifest)
    assert parse(manifest).spec.engine.env[0].name == "master_addr"  # env names are case-sensitive
    assert "MASTER_ADDR" in RESERVED_ENV


def test_replicas_and_autoscaling_share_one_bound() -> None:
    manifest = base_manifest()
    setter("spec.replicas", MAX_REPLICAS)(manifest)
    setter("spec.autoscaling", {"enabled": True, "minReplicas": 1, "maxReplicas": MAX_REPLICAS})(
        manifest
    )
    spec = parse(manifest).spec
    assert spec.replicas == spec.autoscaling.max_replicas == MAX_REPLICAS


_URI_TAILS = st.text(alphabet="ab./%2eEfF_-~?=&: \n#'@", max_size=14)


@given(
    st.sampled_from(["hf://", "s3://", "gs://", "https://", "http://", "pvc://", "file://", "x"]),
    st.sampled_from(["", "org", "bucket", "host.example:8443", "claim", "B"]),
    _URI_TAILS,
)
def test_admission_and_puller_accept_exactly_the_same_uris(
    scheme: str, host: str, tail: str
) -> None:
    uri = f"{scheme}{host}/{tail}" if tail else f"{scheme}{host}"
    manifest = base_manifest()
    setter("spec.model.uri", uri)(manifest)
    try:
        parse_uri(uri)
        puller = True
    except BadURIError:
        puller = False
    try:
        parse(manifest)
        admitted = True
    except InvalidSpecError:
        admitted = False
    assert admitted == puller, uri


@given(st.sampled_from(OWNED_FLAGS), st.text(max_size=20))
def test_any_owned_flag_with_any_value_is_rejected(flag: str, value: str) -> None:
    manifest = base_manifest()
    setter("spec.engine.args", [f"{flag}={value}"])(manifest)
    with pytest.raises(
        InvalidSpecError, match=re.escape("engine.args sets a flag the operator owns")
    ):
        parse(manifest)


@pytest.mark.parametrize(
    ("tensor", "pipeline", "gpus", "nodes"),
    [(8, 1, 4, 2), (16, 1, 4, 4), (8, 2, 4, 4), (6, 2, 4, 3)],
)
def test_tensor_parallelism_across_nodes_is_accepted(
    tensor: int, pipeline: int, gpus: int, nodes: int
) -> None:
    """GB200 NVL72-style layouts (TP over several 4-GPU nodes) need no opt-in flag."""
    manifest = base_manifest()
    setter("spec.parallelism", {"tensor": tensor, "pipeline": pipeline, "gpusPerNode": gpus})(
        manifest
    )
    assert parse(manifest).spec.parallelism.nodes == nodes


@given(
    st.integers(min_value=1, max_value=16),
    st.integers(min_value=1, max_value=8),
    st.sampled_from([1, 2, 4, 8]),
)
def test_parallelism_rule_agrees_with_arithmetic(tensor: int, pipeline: int, gpus: int) -> None:
    manifest = base_manifest()
    setter("spec.parallelism", {"tensor": tensor, "pipeline": pipeline, "gpusPerNode": gpus})(
        manifest
    )
    world = tensor * pipeline
    valid = world % gpus == 0 and world >= gpus  # tensor may span nodes
    if valid:
        assert parse(manifest).spec.parallelism.nodes * gpus == world
    else:
        with pytest.raises(InvalidSpecError, match=r"^spec\.parallelism: "):
            parse(manifest)

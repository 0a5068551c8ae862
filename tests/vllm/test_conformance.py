"""What the operator and the simulator say to vLLM, checked by real vLLM's own code: every
rendered ``vllm serve`` command line, every ``VLLM_*`` variable, the default image's version and
the simulator's flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmsvc.api.spec import DEFAULT_ENGINE_IMAGE
from llmsvc.sim.main import add_arguments as sim_arguments
from tests.vllm import engine, rendered

CHECKER = str(Path(__file__).with_name("vllm_cli_check.py"))
READ_ENVS = "import json, vllm.envs as e; print(json.dumps(sorted(e.environment_variables)))"
# The simulator's own knobs (latency model, fake loading): not vLLM flags, and must never be.
SIM_ONLY_FLAGS = {
    "--load-seconds",
    "--kv-cache-tokens",
    "--default-max-tokens",
    "--prefill-base-ms",
    "--prefill-ms-per-token",
    "--itl-base-ms",
    "--itl-ms-per-seq",
}


@pytest.fixture(scope="module")
def serve_argvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    argvs = rendered.serve_argvs(tmp_path_factory.mktemp("stubs"))
    assert len(argvs) >= len(rendered.services()) + 1  # at least one worker rank too
    return argvs


def check(python: Path, argvs: dict[str, list[str]]) -> dict[str, str]:
    results: dict[str, str] = engine.run_in_vllm(python, [CHECKER], {"argvs": argvs})
    return results


def test_the_default_engine_image_is_the_tested_vllm(vllm_python: Path) -> None:
    version = engine.run_in_vllm(
        vllm_python, ["-c", "import json, vllm; print(json.dumps(vllm.__version__))"]
    )
    assert f"vllm/vllm-openai:v{engine.pinned_version()}" == DEFAULT_ENGINE_IMAGE
    assert str(version) == engine.pinned_version()


def test_every_rendered_command_line_parses_and_validates(
    vllm_python: Path, serve_argvs: dict[str, list[str]]
) -> None:
    results = check(vllm_python, serve_argvs)
    assert results == dict.fromkeys(serve_argvs, "ok")


def test_the_checker_rejects_what_vllm_rejects(vllm_python: Path) -> None:
    """The check is real: a bad flag and a bad value fail it."""
    bad = {
        "flag": ["serve", "/m", "--no-such-flag", "1"],
        "value": ["serve", "/m", "--tensor-parallel-size", "two"],
        "choice": ["serve", "/m", "--kv-cache-dtype", "fp7"],
    }
    results = check(vllm_python, bad)
    assert all(result != "ok" for result in results.values()), results


def test_every_vllm_variable_the_operator_sets_is_read_by_vllm(vllm_python: Path) -> None:
    read = set(engine.run_in_vllm(vllm_python, ["-c", READ_ENVS]))
    ours = rendered.vllm_env_names()
    assert "VLLM_ENGINE_READY_TIMEOUT_S" in ours
    assert ours <= read, f"vLLM {engine.pinned_version()} ignores {sorted(ours - read)}"


def sim_flags() -> dict[str, str]:
    """Each simulator flag with its default as a command-line value."""
    parser = argparse.ArgumentParser()
    sim_arguments(parser)
    return {
        action.option_strings[0]: str(action.default)
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }


def test_simulator_flags_are_a_faithful_subset(vllm_python: Path) -> None:
    """Sim flags named like vLLM's take the same values under vLLM; the rest are sim-only."""
    flags = sim_flags()
    shared = {flag: value for flag, value in flags.items() if flag not in SIM_ONLY_FLAGS}
    argvs = {flag: ["serve", "--model", "/m", flag, value] for flag, value in shared.items()}
    argvs |= {flag: ["serve", "/m", flag, "1"] for flag in SIM_ONLY_FLAGS}
    results = check(vllm_python, argvs)
    assert {f: results[f] for f in shared} == dict.fromkeys(shared, "ok")
    for flag in SIM_ONLY_FLAGS:
        assert "unrecognized arguments" in results[flag], f"{flag} is a vLLM flag now"
    assert set(flags) >= SIM_ONLY_FLAGS


# Value to try for a fake-vllm flag that has neither choices nor a default.
SAMPLE_VALUES = {
    "--served-model-name": "m",
    "--max-model-len": "1024",
    "--distributed-executor-backend": "mp",
    "--max-num-batched-tokens": "2048",
    "--kv-cache-dtype": "auto",
    "--quantization": "fp8",
    "--tokenizer": "/m",
    "--revision": "main",
    "--load-format": "auto",
    "--api-key": "k",
    "--chat-template": "{{ messages }}",  # an inline template (a path must exist)
    "--generation-config": "auto",
}


def fake_vllm_argvs(flags: dict[str, dict[str, object]]) -> dict[str, list[str]]:
    """One ``vllm serve`` argv per accepted flag and value of the test images' fake vllm."""
    argvs: dict[str, list[str]] = {}
    for flag, spec in flags.items():
        action = spec.get("action")
        if action == "store_true":
            argvs[flag] = ["serve", "/m", flag]
        elif action is argparse.BooleanOptionalAction:
            argvs[flag] = ["serve", "/m", flag]
            argvs[f"--no-{flag[2:]}"] = ["serve", "/m", f"--no-{flag[2:]}"]
        elif "choices" in spec:
            for choice in spec["choices"]:  # type: ignore[attr-defined]
                argvs[f"{flag} {choice}"] = ["serve", "/m", flag, str(choice)]
        else:
            value = SAMPLE_VALUES.get(flag, str(spec.get("default", "1")))
            argvs[flag] = ["serve", "/m", flag, value]
    return argvs


def test_the_fake_vllm_of_test_images_accepts_only_what_vllm_accepts(vllm_python: Path) -> None:
    """The realnode test images' ``vllm`` (llmsvc.sim.vllm_cli.SERVE_FLAGS): each flag and
    value it accepts is accepted by real vLLM too."""
    from llmsvc.sim import vllm_cli

    argvs = fake_vllm_argvs(vllm_cli.SERVE_FLAGS)
    results = check(vllm_python, argvs)
    assert {k: v for k, v in results.items() if v != "ok"} == {}

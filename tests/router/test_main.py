"""``llmsvc router`` and ``llmsvc sim`` command lines: flags, validation, API keys."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmsvc.cli import build_parser
from llmsvc.router.main import read_api_keys, validate
from llmsvc.sim.main import config_from_args


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(list(argv))


def test_the_operator_rendered_command_line_parses() -> None:
    args = parse(
        "router",
        "--service",
        "llama",
        "--namespace",
        "ns",
        "--policy",
        "prefix-aware",
        "--port",
        "8000",
    )
    validate(args)
    assert (args.service, args.namespace, args.policy, args.port) == (
        "llama",
        "ns",
        "prefix-aware",
        8000,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["router"], "either --backend"),
        (["router", "--backend", "http://a:1", "--service", "x", "--namespace", "n"], "either"),
        (["router", "--service", "x"], "--namespace"),
        (["router", "--backend", "a:1"], "http://"),
        (["router", "--backend", "http://a:1", "--max-concurrency", "0"], "--max-concurrency"),
        (["router", "--backend", "http://a:1", "--balance-slack", "0"], "--balance-slack"),
        (["router", "--backend", "http://a:1", "--chunk-timeout", "0"], "--chunk-timeout"),
        (["router", "--backend", "http://a:1", "--max-json-depth", "0"], "--max-json-depth"),
        (["router", "--backend", "http://a:1", "--load-interval", "-1"], "--load-interval"),
        (["router", "--backend", "http://a:1", "--load-interval", "nan"], "--load-interval"),
        (["router", "--backend", "http://a:1", "--load-interval", "inf"], "--load-interval"),
        (["router", "--backend", "http://a:1", "--load-timeout", "0"], "--load-timeout"),
        (["router", "--backend", "http://a:1", "--max-metrics-bytes", "0"], "--max-metrics-bytes"),
        (["router", "--backend", "http://a:1", "--health-interval", "0"], "--health-interval"),
        (["router", "--backend", "http://a:1", "--health-timeout", "nan"], "--health-timeout"),
        (["router", "--backend", "http://a:1", "--health-failures", "0"], "--health-failures"),
        (
            ["router", "--backend", "http://a:1", "--max-buffered-bytes", "10"],
            "--max-buffered-bytes must be at least --max-body-bytes",
        ),
    ],
)
def test_bad_router_flags_say_what_to_change(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        validate(parse(*argv))


def test_unknown_policy_is_rejected_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("router", "--backend", "http://a:1", "--policy", "random")
    assert "invalid choice" in capsys.readouterr().err


def test_api_keys_from_file_and_env(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nsk-one\n\nsk-two\n")
    assert read_api_keys(keys, "ignored") == {"sk-one", "sk-two"}
    assert read_api_keys(None, "sk-a, sk-b,") == {"sk-a", "sk-b"}
    assert read_api_keys(None, None) == frozenset()
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(SystemExit, match="holds no key"):
        read_api_keys(tmp_path / "empty", None)
    with pytest.raises(SystemExit, match="cannot read"):
        read_api_keys(tmp_path / "missing", None)


def test_sim_flags_become_the_config() -> None:
    config = config_from_args(parse("sim", "--max-num-seqs", "4", "--model", "m", "--seed", "9"))
    assert (config.max_num_seqs, config.model, config.seed) == (4, "m", 9)
    with pytest.raises(SystemExit, match="--max-num-seqs"):
        config_from_args(parse("sim", "--max-num-seqs", "0"))

"""``llmsvc operator`` flags and the kopf settings it applies (no cluster needed)."""

from __future__ import annotations

import logging
import re

import kopf
import pytest

from llmsvc.cli import build_parser
from llmsvc.controller.handlers import configure, register
from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings
from llmsvc.controller.runtime import Runtime


def test_operator_flags_and_defaults() -> None:
    args = build_parser("operator").parse_args(["operator", "-n", "a", "--namespace", "b"])
    assert args.namespace == ["a", "b"]
    assert args.resync_seconds == 30
    assert args.health_address.endswith(":8080")
    assert args.workers == 16


@pytest.mark.parametrize("bad", ["0", "-2", "four", "1.5"])
def test_workers_must_be_a_whole_number_of_at_least_one(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser("operator").parse_args(["operator", "--workers", bad])
    assert "is not a whole number of at least 1" in capsys.readouterr().err


def test_operator_help_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("operator").parse_args(["operator", "--help"])
    out = capsys.readouterr().out
    for flag in ("--namespace", "--image", "--resync-seconds", "--metrics-address"):
        assert flag in out


def test_kopf_bookkeeping_lives_under_our_prefix() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, logging.INFO)
    assert settings.persistence.finalizer == "llmsvc.io/finalizer"
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.networking.request_timeout == 30
    assert settings.peering.standalone
    assert settings.scanning.disabled


def test_no_handler_needs_a_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    runtime = Runtime(settings=Settings(image="img"), metrics=OperatorMetrics())
    register(registry, runtime)
    # kopf puts a finalizer on objects with changing handlers (create/update/delete) or with
    # timers and daemons (spawning).
    assert registry._watching.get_all_handlers() == []  # the operator's own caches watch
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        (["--mark-leader-pod"], {"POD_NAME": "p", "POD_NAMESPACE": "ns"}, "needs --leader-elect"),
        (["--mark-leader-pod", "--leader-elect"], {"POD_NAME": "p"}, "$POD_NAMESPACE"),
        (["--mark-leader-pod", "--leader-elect"], {"POD_NAMESPACE": "ns"}, "$POD_NAME"),
    ],
)
def test_mark_leader_pod_refuses_to_start_without_what_it_needs(
    flags: list[str], env: dict[str, str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmsvc.controller.main import check_leader_flags

    for name in ("POD_NAME", "POD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser("operator").parse_args(["operator", *flags])
    with pytest.raises(SystemExit, match=re.escape(says)):
        check_leader_flags(args)
    monkeypatch.setenv("POD_NAME", "p")
    monkeypatch.setenv("POD_NAMESPACE", "ns")
    check_leader_flags(build_parser("operator").parse_args(["operator", "--leader-elect", *flags]))

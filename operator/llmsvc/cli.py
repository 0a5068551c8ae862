"""The ``llmsvc`` command: one entry point for every program this project ships.

Each subcommand lives in its own ``main`` module that exposes ``add_arguments(parser)`` and
``run(args) -> int``. Those modules import only the standard library at import time, so that
``llmsvc --help`` stays fast and a subcommand pays only for its own dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from llmsvc import __version__

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "render": ("llmsvc.render.main", "print the child objects of LLMService manifests"),
    "crd": ("llmsvc.crdgen", "print the LLMService CustomResourceDefinition"),
    "operator": ("llmsvc.controller.main", "run the operator (kopf)"),
    "router": ("llmsvc.router.main", "run the OpenAI-compatible router"),
    "pull": ("llmsvc.puller.main", "pre-pull model weights into a cache directory"),
    "sim": ("llmsvc.sim.main", "run a vLLM-compatible simulator"),
}


class Subcommand(Protocol):
    """What a subcommand module provides."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> Subcommand:
    return cast(Subcommand, importlib.import_module(SUBCOMMANDS[name][0]))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``only``, just that subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="llmsvc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"llmsvc {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        if name == only:
            _load(name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if a in SUBCOMMANDS), None)
    args = build_parser(chosen).parse_args(args_list)
    return _load(args.command).run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Run inside the vLLM venv: parse and validate command lines with vLLM's own ``vllm`` CLI.

stdin: JSON ``{"argvs": {key: [words after 'vllm']}}``; stdout (last line): JSON
``{key: "ok" | the error}``. Each argv goes through ``vllm.entrypoints.cli.main.main()`` exactly
as the ``vllm`` program runs it (its parser, then the subcommand's ``validate``), except that
serving is replaced by building the engine's arguments (``AsyncEngineArgs.from_cli_args``).
The full engine config needs the real model; tests/vllm/test_multinode.py builds one for real.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

CHECKED: dict[str, str] = {}


def _serve_check(args: Any) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs

    if getattr(args, "model_tag", None) is not None:
        args.model = args.model_tag
    AsyncEngineArgs.from_cli_args(args)


def check_one(argv: list[str]) -> str:
    import vllm.entrypoints.cli.main as cli
    import vllm.entrypoints.cli.serve as serve

    serve.ServeSubcommand.cmd = staticmethod(_serve_check)
    err = io.StringIO()
    sys.argv = ["vllm", *argv]
    try:
        with contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exit_:
        return f"exit {exit_.code}: {err.getvalue()[-2000:]}"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


def main() -> None:
    request = json.load(sys.stdin)
    results = {key: check_one(argv) for key, argv in request["argvs"].items()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()

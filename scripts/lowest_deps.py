"""Check that the lowest versions pyproject.toml allows really work (``make lowest-deps``).

Every runtime dependency is installed at exactly its floor (the ``>=`` bound; a lowest-direct
resolution: their own dependencies resolve normally) into a throwaway virtualenv, cached under
``~/.cache/llmsvc/lowest/`` by the hash of the floors, so a second run installs nothing. Then, with
the source tree on ``PYTHONPATH`` (nothing of the project is installed there):

1. every ``llmsvc`` module imports (an API missing from an old release fails here);
2. ``llmsvc --help`` of every subcommand parses;
3. the unit tests of the parts that run the floors hardest (router server and proxy, simulator,
   render, API) pass,
   with the test tools at their newest versions.

Exit 0 when all pass; otherwise the failing step's output and a non-zero code.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLMSVC_CACHE", Path.home() / ".cache" / "llmsvc")) / "lowest"
TEST_TOOLS = ["pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "openai", "jsonschema"]
# The router's server and proxy tests lean hardest on aiohttp (idle cuts, streaming, limits).
TESTS = [
    "tests/router/test_hostile.py",
    "tests/router/test_proxy.py",
    "tests/router/test_queue.py",
    "tests/sim",
    "tests/test_render.py",
    "tests/test_api.py",
]
# Lint tools are not installed there: their checks run in `make lint`.
DESELECT = ["tests/test_render.py::test_import_contracts_hold"]
SUBCOMMANDS = ["render", "crd", "operator", "router", "pull", "sim"]
IMPORT_ALL = """
import importlib, pkgutil, llmsvc
names = [m.name for m in pkgutil.walk_packages(llmsvc.__path__, "llmsvc.")]
for name in names:
    importlib.import_module(name)
print(f"imported {len(names)} modules")
"""


def floors() -> list[str]:
    """``NAME==FLOOR`` for every runtime dependency of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,;\s]+)", requirement)
        if not match:
            sys.exit(f"pyproject.toml: {requirement!r} has no >= floor: give it one")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


def environment(pins: list[str]) -> Path:
    """The cached virtualenv with ``pins`` and the test tools; built once per set of floors."""
    key = hashlib.sha256("\n".join([sys.version, *pins, *TEST_TOOLS]).encode()).hexdigest()[:16]
    home = CACHE / key
    if (home / ".installed").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    venv.create(home, with_pip=True)
    pip = [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # Wheels only: a floor without a wheel for this Python is a floor nobody can install.
    run([*pip, "--only-binary=:all:", *pins])
    run([*pip, *TEST_TOOLS])
    (home / ".installed").touch()
    return home


def run(command: list[str]) -> None:
    """Run ``command`` in the source tree; stop with its exit code if it fails."""
    env = os.environ | {"PYTHONPATH": f"{ROOT / 'operator'}{os.pathsep}{ROOT}"}
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if result.returncode:
        sys.exit(f"lowest-deps: failed ({result.returncode}): {' '.join(command)}")


def main() -> int:
    """Install the floors (cached) and run the checks."""
    pins = floors()
    print("floors:", " ".join(pins))
    python = str(environment(pins) / "bin" / "python")
    run([python, "-c", IMPORT_ALL])
    cli = "from llmsvc.cli import main; import sys; sys.exit(main())"
    for name in SUBCOMMANDS:
        run([python, "-c", cli, name, "--help"])
    deselect = [f"--deselect={test}" for test in DESELECT]
    run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *deselect, *TESTS])
    return 0


if __name__ == "__main__":
    sys.exit(main())

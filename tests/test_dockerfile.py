"""The Dockerfile, checked without Docker: its instructions parsed, and its install steps mirrored.

Docker does not run here, so the parsed instructions are checked for the properties the image
must have (pinned slim base, multi-stage, dependencies cached before the source, non-root numeric
USER, ``llmsvc`` entrypoint), and the same two steps (build the project wheel with ``pip wheel
--no-deps``, install it into a fresh Python) run in a temporary venv whose ``llmsvc`` must start.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmsvc import __version__

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case) and its raw argument text."""

    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped per build stage (each starts with FROM)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def base_images(instructions: list[Instruction]) -> list[str]:
    """Every FROM image with global ARG defaults substituted (stage names left out)."""
    args = dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.args)
    images = []
    for ins in instructions:
        if ins.keyword == "FROM":
            image = ins.args.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image))
    return images


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def test_base_images_are_pinned_slim_python(instructions: list[Instruction]) -> None:
    images = base_images(instructions)
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert tag, f"{image}: pin a version tag"
        assert tag != "latest", f"{image}: pin a version tag, not latest"
        assert re.match(r"3\.11\.\d+-slim", tag), f"{image}: a full 3.11.x slim tag"


def test_multi_stage_final_stage_runs_as_numeric_non_root(
    instructions: list[Instruction],
) -> None:
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "build wheels in one stage, install them in another"
    users = [i.args for i in all_stages[-1] if i.keyword == "USER"]
    assert users, "the final stage needs a USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"USER {users[-1]}: numeric, so runAsNonRoot can be verified"
    assert int(uid) >= 10000, f"USER {users[-1]}: a uid >= 10000 (outside system ranges)"
    assert not gid or int(gid) > 0, f"USER {users[-1]}: a non-root group"


def test_entrypoint_is_llmsvc_in_exec_form(instructions: list[Instruction]) -> None:
    entry = [i.args for i in stages(instructions)[-1] if i.keyword == "ENTRYPOINT"]
    assert entry, "the final stage needs an ENTRYPOINT"
    assert json.loads(entry[-1]) == ["llmsvc"]
    cmd = [json.loads(i.args) for i in instructions if i.keyword == "CMD"]
    assert cmd[-1] == ["operator"]


def test_final_stage_has_oci_labels_matching_the_package(instructions: list[Instruction]) -> None:
    text = " ".join(i.args for i in stages(instructions)[-1] if i.keyword == "LABEL")
    labels = dict(re.findall(r'(org\.opencontainers\.image\.\w+)="([^"]*)"', text))
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert {"title", "description"} <= {k.rsplit(".", 1)[1] for k in labels}
    assert "Apache License" in (REPO / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (REPO / "LICENSE").read_text()


def test_dependencies_are_cached_before_the_source(instructions: list[Instruction]) -> None:
    build = stages(instructions)[0]
    copies = [i.args for i in build if i.keyword == "COPY"]
    deps = next(n for n, c in enumerate(copies) if "pyproject.toml" in c)
    source = next(n for n, c in enumerate(copies) if c.startswith("operator/"))
    assert deps < source, "copy pyproject.toml (deps layer) before operator/ (source)"
    wheels = [i.args for i in build if i.keyword == "RUN" and "pip wheel" in i.args]
    assert "--no-deps" in wheels[-1], "the project wheel is built without its dependencies"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` (last match wins, ``!`` re-includes) exclude ``path``."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob + "/*"):
            excluded = not negate
    return excluded


def test_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for needed in ("pyproject.toml", "README.md", "operator/llmsvc/cli.py"):
        assert (REPO / needed).exists()
        assert not dockerignored(needed, patterns), f"{needed} is excluded from the context"
    for unwanted in (".venv/bin/python", ".git/config", "tests/test_api.py", "e2e/helpers.py"):
        assert dockerignored(unwanted, patterns), f"{unwanted} would be sent to the daemon"


@pytest.mark.slow
def test_install_steps_give_a_working_llmsvc(tmp_path: Path) -> None:
    """The image's steps, mirrored: `pip wheel --no-deps .`, then install it into a fresh Python.

    Dependencies come from PyPI through pip's cache (about half a minute when warm).
    """
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
                   check=True, timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("llmservice_operator-*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, timeout=600)  # fmt: skip
    llmsvc = str(tmp_path / "venv" / "bin" / "llmsvc")
    version = subprocess.run([llmsvc, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"llmsvc {__version__}"
    usage = subprocess.run(
        [llmsvc, "operator", "--help"], capture_output=True, text=True, check=True
    )
    assert "--metrics-address" in usage.stdout, usage.stderr


def _run_stage_step(run: str, src: Path, wheels: Path) -> None:
    """One ``RUN`` of the build stage, in ``src``, with /wheels and pip pointed at this machine."""
    pip = f"{sys.executable} -m pip --disable-pip-version-check wheel -q --no-deps"
    script = run.replace("/wheels/", f"{wheels}/").replace("pip wheel", pip)
    subprocess.run(["sh", "-c", script], cwd=src, check=True, timeout=300)


@pytest.mark.slow
def test_the_source_layer_wheel_holds_the_real_package(
    instructions: list[Instruction], tmp_path: Path
) -> None:
    """Both wheel steps of the build stage in one directory, as in the image.

    COPY keeps the sources' (older) mtimes, so anything the dependency step leaves behind
    (setuptools' build/lib with the empty ``__init__.py``) would win over the real source.
    """
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    runs = [i.args for i in stages(instructions)[0] if i.keyword == "RUN"]
    _run_stage_step(runs[0], src, wheels)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "operator", src / "operator", ignore=ignore, dirs_exist_ok=True)
    _run_stage_step(runs[1], src, wheels)
    (wheel,) = (wheels / "app").glob("llmservice_operator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        init = archive.read("llmsvc/__init__.py").decode()
        assert "__version__" in init, "the wheel holds the empty placeholder package"
        assert "llmsvc/sim/vllm_cli.py" in archive.namelist()

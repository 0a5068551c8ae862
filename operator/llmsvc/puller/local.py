"""``pvc://`` models: nothing to fetch, only check the directory is loadable."""

from __future__ import annotations

import json
from pathlib import Path

from llmsvc.puller.errors import NotFoundError, VerifyError
from llmsvc.puller.manifest import matches, read_marker

WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def loadable_problems(model_dir: Path) -> list[str]:
    """What stops vLLM from loading ``model_dir`` (empty when it looks loadable)."""
    if not model_dir.is_dir():
        return [f"{model_dir} is not a directory"]
    weights = [p for g in WEIGHT_GLOBS for p in model_dir.glob(g)]
    ggufs = [p for p in weights if p.suffix == ".gguf"]
    problems = [] if (model_dir / "config.json").is_file() or ggufs else ["config.json is missing"]
    if not weights:
        problems.append("no weights (*.safetensors, *.bin, *.pt or *.gguf)")
    problems += [f"{p.name} is empty" for p in weights if p.stat().st_size == 0]
    for index in INDEXES:
        problems += _index_problems(model_dir, index)
    return problems


def _index_problems(model_dir: Path, index: str) -> list[str]:
    path = model_dir / index
    if not path.is_file():
        return []
    try:
        shards = set(json.loads(path.read_text())["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        return [f"{index} is not a valid weight index"]
    return [
        f"{index} lists {s} but it is missing"
        for s in sorted(shards)
        if not (model_dir / s).is_file()
    ]


def verify_local(model_dir: Path, checksums: bool) -> None:
    """Raise unless ``model_dir`` is loadable and matches its marker's manifest, if it has one."""
    if not model_dir.exists():
        raise NotFoundError(f"{model_dir} does not exist: check the claim/path in the model URI")
    problems = loadable_problems(model_dir)
    marker = read_marker(model_dir)
    if marker is not None:
        for f in marker.files:
            if not matches(model_dir / f.path, f.checksum if checksums else None, f.size):
                problems.append(f"{f.path} does not match the manifest (size or checksum)")
    if problems:
        raise VerifyError(f"{model_dir} is not a loadable model: " + "; ".join(problems))

"""A strategic merge of a user's overlay onto a rendered pod template (pure, no Kubernetes client).

The rules follow ``kubectl patch --type strategic`` for the pod fields people override: maps merge
recursively; ``null`` deletes a key; the lists Kubernetes merges by a key (containers by name,
env by name, ports by containerPort, volumeMounts by mountPath, ...) merge item by item, where an
item ``{KEY: ..., $patch: delete}`` removes the matching item; every other list is replaced.
"""

from __future__ import annotations

import copy
from typing import Any

# Pod-template lists that Kubernetes' strategic merge patch merges, and their merge key.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
    "hostAliases": "ip",
    "resourceClaims": "name",
}
DIRECTIVE = "$patch"


def _merge_list(base: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            merged.append(copy.deepcopy(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(merged)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get(DIRECTIVE) == "delete":
            merged = [old for i, old in enumerate(merged) if i != index]
        elif index is None:
            merged.append({k: v for k, v in copy.deepcopy(item).items() if k != DIRECTIVE})
        else:
            merged[index] = merge(merged[index], item)
    return merged


def _merge_value(name: str, old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return merge(old, new)
    if isinstance(old, list) and isinstance(new, list) and name in MERGE_KEYS:
        return _merge_list(old, new, MERGE_KEYS[name])
    return copy.deepcopy(new)


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` merged in strategically (neither argument is changed)."""
    merged = copy.deepcopy(base)
    for name, value in patch.items():
        if name == DIRECTIVE:
            continue
        if value is None:
            merged.pop(name, None)
        elif name in merged:
            merged[name] = _merge_value(name, merged[name], value)
        elif isinstance(value, list) and name in MERGE_KEYS:
            merged[name] = _merge_list([], value, MERGE_KEYS[name])
        else:
            merged[name] = copy.deepcopy(value)
    return merged

"""What users add to the rendered children: pull secrets, service account, metadata, overlays.

Applied last, after every builder ran, to the pod templates (engine StatefulSets, router
Deployment) and the Services. A pod-template overlay (:mod:`llmsvc.render.overlay`) may add and
change anything except the fields the operator owns; changing one is an
:class:`~llmsvc.api.InvalidSpecError` that names the field and what to use instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmsvc.api import InvalidSpecError, LLMService
from llmsvc.api.overrides import ExtraMetadata
from llmsvc.render.overlay import merge

Manifest = dict[str, Any]

GPU = "nvidia.com/gpu"
OWNED_POD_FIELDS = ("serviceAccountName", "imagePullSecrets", "enableServiceLinks")
OWNED_CONTAINER_FIELDS = ("image", "command", "args", "ports")
HINTS = {
    "image": "set spec.engine.image or spec.router.image",
    "command": "add flags with spec.engine.args",
    "args": "add flags with spec.engine.args",
    "serviceAccountName": "set spec.engine.serviceAccountName",
    "imagePullSecrets": "set spec.imagePullSecrets",
    "labels": "add labels with spec.podMetadata.labels under another key",
    "env": "set other variables, or spec.engine.env",
    GPU: "set spec.parallelism.gpusPerNode",
}


def pull_secrets(svc: LLMService, defaults: Sequence[str]) -> list[Manifest]:
    """``imagePullSecrets`` of every pod: the spec's, else the operator's defaults."""
    return [{"name": name} for name in svc.spec.image_pull_secrets or defaults]


def _add_metadata(meta: Manifest, extra: ExtraMetadata) -> None:
    """Extra labels and annotations under the operator's own (which always win)."""
    if extra.labels:
        meta["labels"] = dict(extra.labels) | meta.get("labels", {})
    if extra.annotations:
        meta["annotations"] = dict(extra.annotations) | meta.get("annotations", {})


def _named(items: list[Manifest], name: str, key: str = "name") -> Manifest | None:
    return next((item for item in items if item.get(key) == name), None)


def _container_fields(spec: Manifest, base: Manifest, field: str) -> dict[str, Any]:
    """The owned parts of ``spec``'s containers (or initContainers) that ``base`` has."""
    owned: dict[str, Any] = {}
    for container in base.get(field, []):
        name = container["name"]
        mine = _named(spec.get(field, []), name) or {}
        where = f"spec.{field}[{name}]"
        owned |= {f"{where}.{key}": mine.get(key) for key in OWNED_CONTAINER_FIELDS}
        for var in container.get("env", []):
            owned[f"{where}.env[{var['name']}]"] = _named(mine.get("env", []), var["name"])
        for kind in ("requests", "limits"):
            owned[f"{where}.resources.{kind}[{GPU}]"] = (
                mine.get("resources", {}).get(kind, {}).get(GPU)
            )
    return owned


def owned_fields(template: Manifest, base: Manifest) -> dict[str, Any]:
    """Field path -> value of every operator-owned field of ``template`` (keys taken from base)."""
    spec, base_spec = template.get("spec", {}), base["spec"]
    labels = template.get("metadata", {}).get("labels", {})
    owned = {f"metadata.labels[{key}]": labels.get(key) for key in base["metadata"]["labels"]}
    owned |= {f"spec.{key}": spec.get(key) for key in OWNED_POD_FIELDS}
    for field in ("containers", "initContainers"):
        owned |= _container_fields(spec, base_spec, field)
    for volume in base_spec.get("volumes", []):
        owned[f"spec.volumes[{volume['name']}]"] = _named(spec.get("volumes", []), volume["name"])
    return owned


def _hint(path: str) -> str:
    """What to use instead of overlaying ``path``."""
    for key, hint in HINTS.items():
        if path.endswith(f".{key}") or f".{key}[" in path or f"[{key}]" in path:
            return hint
    return "remove it from the overlay"


def _check_shape(overlay: Manifest, field: str) -> None:
    unknown = sorted(set(overlay) - {"metadata", "spec"})
    unknown += sorted(
        f"metadata.{k}" for k in set(overlay.get("metadata") or {}) - {"labels", "annotations"}
    )
    if unknown:
        raise InvalidSpecError(
            [
                f"{field}: unsupported keys {', '.join(unknown)}: an overlay holds only "
                "metadata.labels, metadata.annotations and spec"
            ]
        )


def apply_overlay(template: Manifest, overlay: Manifest, field: str) -> Manifest:
    """``template`` with ``overlay`` merged in; InvalidSpecError if it touches an owned field."""
    if not overlay:
        return template
    _check_shape(overlay, field)
    merged = merge(template, overlay)
    before, after = owned_fields(template, template), owned_fields(merged, template)
    changed = [path for path, value in before.items() if after[path] != value]
    if changed:
        raise InvalidSpecError(
            [f"{field}: {path} is owned by the operator: {_hint(path)}" for path in changed]
        )
    return merged


def _customize_pods(svc: LLMService, manifest: Manifest, secrets: list[Manifest]) -> Manifest:
    """The pod template of ``manifest`` with the user's additions (copies of what changes)."""
    template = manifest["spec"]["template"]
    template = template | {"metadata": dict(template["metadata"]), "spec": dict(template["spec"])}
    engine = manifest["kind"] == "StatefulSet"
    if secrets:
        template["spec"]["imagePullSecrets"] = secrets
    if engine and svc.spec.engine.service_account_name:
        template["spec"]["serviceAccountName"] = svc.spec.engine.service_account_name
    _add_metadata(template["metadata"], svc.spec.pod_metadata)
    if engine:
        overlay, field = svc.spec.engine.pod_template, "spec.engine.podTemplate"
    else:
        overlay, field = svc.spec.router.pod_template, "spec.router.podTemplate"
    return apply_overlay(template, overlay, field)


def customize(svc: LLMService, manifest: Manifest, default_pull_secrets: Sequence[str]) -> Manifest:
    """``manifest`` with the user's additions. The input is left as it was: the levels that
    change are copies, the rest is shared with it (nothing downstream changes a manifest)."""
    kind = manifest["kind"]
    if kind == "Service":
        meta = dict(manifest["metadata"])
        _add_metadata(meta, svc.spec.service_metadata)
        return manifest | {"metadata": meta}
    if kind in ("StatefulSet", "Deployment"):
        template = _customize_pods(svc, manifest, pull_secrets(svc, default_pull_secrets))
        return manifest | {"spec": manifest["spec"] | {"template": template}}
    return manifest

"""Every Kubernetes object the program creates is valid for the pinned Kubernetes version.

Built-in kinds are held against the Kubernetes OpenAPI schema (kubernetes-validate, strict mode:
unknown fields fail). Consul and Gateway API objects are built from typed models of their CRDs.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from migration.phases import PHASE_NAMES
from program.config import parse_config

KUBERNETES_VERSION = parse_config({}).versions.kubernetes + ".0"
CRD_GROUPS = ("consul.hashicorp.com", "gateway.networking.k8s.io")


def _plain(value: Any) -> Any:
    """Pulumi carries every number as a double; Kubernetes integers must be integers again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _manifests(run) -> list[dict[str, Any]]:
    out = []
    for res in run.resources:
        parts = res.type.split(":")
        if not res.custom or parts[0] != "kubernetes" or len(parts) != 3 or "/" not in parts[1]:
            continue  # providers and components
        if parts[1].startswith("helm.sh/"):
            continue  # a Helm release is not an object; the chart's values are checked on their own
        group_version, kind = parts[1], parts[2]
        if group_version.rsplit("/", 1)[0] in CRD_GROUPS or group_version.startswith("apiextensions"):
            continue
        if kind.endswith("Patch"):
            continue  # a patch is a partial object; its target exists already
        manifest = _plain(dict(res.inputs))
        group, version = group_version.rsplit("/", 1)
        manifest.setdefault("apiVersion", version if group == "core" else f"{group}/{version}")
        manifest.setdefault("kind", kind)
        manifest.setdefault("metadata", {}).setdefault("name", res.name)
        out.append(manifest)
    return out


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_kubernetes_object_validates_against_the_pinned_schema(program, stack, phase):
    run = program({"phase": phase}, stack=stack)
    assert run.error is None, run.error
    manifests = _manifests(run)
    assert manifests, "the program created no Kubernetes objects"
    problems = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{manifest['kind']} {manifest['metadata']['name']}: {e.message} at {list(e.path)}")
    assert problems == []

"""Typed custom resources: a model of a CRD's spec, and the one way it becomes a Kubernetes object.

consul_crds.py (consul.hashicorp.com) and gateway_api.py (gateway.networking.k8s.io) model only the
fields this program sets, each checked against the CRD schema the consul-k8s chart installs, so a
typo or an unknown field fails when the model is built, before anything reaches the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel


class CrdSpec(BaseModel):
    """A custom resource's spec. API_VERSION and KIND name the CRD; FIXED_NAME, when set, is the only
    metadata.name the controller accepts (Consul's Mesh must be `mesh`, ProxyDefaults `global`)."""

    API_VERSION: ClassVar[str]
    KIND: ClassVar[str]
    FIXED_NAME: ClassVar[str | None] = None

    def to_spec(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def custom_resource(
    resource_name: str,
    spec: CrdSpec,
    *,
    name: str,
    namespace: pulumi.Input[str],
    provider: k8s.Provider,
    parent: pulumi.Resource,
    depends_on: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> k8s.apiextensions.CustomResource:
    """The Kubernetes object for `spec`, named `name` in `namespace`.

    provider, parent and depends_on are the caller's: every such object waits for the Consul release
    (its CRDs and controllers) and, for migration objects, for the phase guard.
    """
    if spec.FIXED_NAME is not None and name != spec.FIXED_NAME:
        raise ValueError(f"a {spec.KIND} must be named {spec.FIXED_NAME!r}; got {name!r}")
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=dict(labels) if labels else None,
        annotations=dict(annotations) if annotations else None,
    )
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=spec.API_VERSION,
        kind=spec.KIND,
        metadata=metadata,
        spec=spec.to_spec(),
        opts=pulumi.ResourceOptions(provider=provider, parent=parent, depends_on=depends_on),
    )

"""Typed custom resources: a model of a CRD's spec, and the one way it becomes a Kubernetes object.

consul.py (consul.hashicorp.com) and gateway_api.py (gateway.networking.k8s.io) model only the
fields this program sets, each checked against the CRD schema the consul-k8s chart installs, so a
typo or an unknown field fails when the model is built, before anything reaches the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, ClassVar

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..annotations import WAIT_FOR

# A Kubernetes object name (a DNS-1123 label), as the CRDs' name fields take it.
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class _Model(BaseModel):
    """Every part of a CRD model: snake_case in Python, camelCase in the CRD, unknown fields refused.

    Where to_camel misspells an acronym (mutualTLSMode) or a key is a Python keyword (`from`), the
    field names the key as validation and serialization alias, not `alias`, so that type checkers
    keep the Python name in the constructor.
    """

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class CrdSpec(_Model):
    """A custom resource's spec. API_VERSION and KIND name the CRD; FIXED_NAME, when set, is the only
    metadata.name the controller accepts (Consul's Mesh must be `mesh`, ProxyDefaults `global`).
    WAIT_FOR, when set, is the `pulumi.com/waitFor` condition that makes the object count as created
    only once its controller has acted on it, not when the API server took it."""

    API_VERSION: ClassVar[str]
    KIND: ClassVar[str]
    FIXED_NAME: ClassVar[str | None] = None
    WAIT_FOR: ClassVar[str | None] = None

    def to_spec(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def custom_resource(
    resource_name: str,
    spec: CrdSpec | pulumi.Output[CrdSpec],
    *,
    kind: type[CrdSpec] | None = None,
    name: str,
    namespace: pulumi.Input[str] | None,  # None: a cluster-scoped kind
    parent: pulumi.Resource,  # its Kubernetes provider is the object's, through the parent's `providers`
    depends_on: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> k8s.apiextensions.CustomResource:
    """The Kubernetes object for `spec`, named `name` in `namespace`.

    `spec` may be an Output (a spec that depends on the deployed phases); `kind` then names its
    model class. parent and depends_on are the caller's: every such object waits for the
    Consul release (its CRDs and controllers) and, for migration objects, for the phase guard.
    """
    if isinstance(spec, pulumi.Output):
        if kind is None:
            raise TypeError("a spec given as an Output needs its model class as `kind`")
        model = kind
    else:
        model = kind or type(spec)
    if model.FIXED_NAME is not None and name != model.FIXED_NAME:
        raise ValueError(f"a {model.KIND} must be named {model.FIXED_NAME!r}; got {name!r}")
    annotations = {**(annotations or {}), **({WAIT_FOR: model.WAIT_FOR} if model.WAIT_FOR else {})}
    metadata = k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=dict(labels) if labels else None,
        annotations=annotations or None,
    )
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=model.API_VERSION,
        kind=model.KIND,
        metadata=metadata,
        spec=spec.apply(lambda s: s.to_spec()) if isinstance(spec, pulumi.Output) else spec.to_spec(),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )

"""Typed Consul config entries (consul.hashicorp.com/v1alpha1) and one way to turn them into Kubernetes objects.

Only the fields this program sets are modelled; each was checked against the consul-k8s CRD schema
(types, required fields, and the values the field descriptions allow where the schema has no enum).
A typo or an unknown field fails when the model is built, before anything reaches the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION = "consul.hashicorp.com/v1alpha1"

# Consul's `protocol` values for service-defaults and proxy-defaults.
Protocol = Literal["tcp", "http", "http2", "grpc"]
MutualTLSMode = Literal["permissive", "strict"]
IntentionAction = Literal["allow", "deny"]
# The CRDs mark timeouts `format: duration`: a Go duration such as "10s" or "1m30s".
Duration = Annotated[str, Field(pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class _Model(BaseModel):
    # snake_case in Python, camelCase in the CRD. Where to_camel misspells an acronym (mutualTLSMode)
    # the field names the key as validation and serialization alias, not `alias`, so that type
    # checkers keep the Python name in the constructor.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Spec(_Model):
    """A config entry's spec; KIND names the CRD, FIXED_NAME the only metadata.name Consul accepts."""

    KIND: ClassVar[str]
    FIXED_NAME: ClassVar[str | None] = None

    def to_spec(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- ServiceDefaults -----------------------------------------------------------------------------


class ServiceTransparentProxy(_Model):
    # True: callers that dial the pod IPs straight from DNS (not the virtual IP) still reach the service.
    dialed_directly: bool | None = None


class ServiceDefaults(Spec):
    KIND: ClassVar[str] = "ServiceDefaults"

    protocol: Protocol | None = None
    mutual_tls_mode: MutualTLSMode | None = Field(
        default=None, validation_alias="mutualTLSMode", serialization_alias="mutualTLSMode"
    )
    transparent_proxy: ServiceTransparentProxy | None = None


# --- ProxyDefaults -------------------------------------------------------------------------------


class ProxyConfig(_Model):
    """ProxyDefaults.spec.config: free-form in the CRD; the keys we set are typed here."""

    protocol: Protocol | None = None


class AccessLogs(_Model):
    enabled: bool
    type: Literal["stdout", "stderr", "file"] | None = None  # Envoy's default is stdout


class ProxyDefaults(Spec):
    KIND: ClassVar[str] = "ProxyDefaults"
    FIXED_NAME: ClassVar[str | None] = "global"

    config: ProxyConfig | None = None
    access_logs: AccessLogs | None = None


# --- ServiceIntentions ---------------------------------------------------------------------------


class IntentionDestination(_Model):
    name: Name


class IntentionSource(_Model):
    name: Name
    action: IntentionAction  # required for an L4 (no permissions) intention
    description: str | None = None


class ServiceIntentions(Spec):
    KIND: ClassVar[str] = "ServiceIntentions"

    destination: IntentionDestination
    sources: list[IntentionSource] = Field(min_length=1)


# --- Mesh ----------------------------------------------------------------------------------------


class MeshTransparentProxy(_Model):
    # True: transparent proxies may only reach services in the mesh; plain-IP egress is blocked.
    mesh_destinations_only: bool


class Mesh(Spec):
    KIND: ClassVar[str] = "Mesh"
    FIXED_NAME: ClassVar[str | None] = "mesh"

    # Must be true for any service-defaults or proxy-defaults to set mutualTLSMode permissive.
    allow_enabling_permissive_mutual_tls: bool = Field(
        validation_alias="allowEnablingPermissiveMutualTLS", serialization_alias="allowEnablingPermissiveMutualTLS"
    )
    transparent_proxy: MeshTransparentProxy


# --- RouteTimeoutFilter (API gateway HTTPRoute filter) -------------------------------------------


class RouteTimeoutFilter(Spec):
    KIND: ClassVar[str] = "RouteTimeoutFilter"

    request_timeout: Duration | None = None
    idle_timeout: Duration | None = None


# --- to Kubernetes -------------------------------------------------------------------------------


def custom_resource(
    resource_name: str,
    spec: Spec,
    *,
    name: str,
    namespace: str,
    provider: k8s.Provider,
    parent: pulumi.Resource,
    depends_on: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]] | None = None,
    labels: dict[str, str] | None = None,
) -> k8s.apiextensions.CustomResource:
    """The Kubernetes object for `spec`, named `name` in `namespace`.

    provider, parent and depends_on are the caller's: every config entry must wait for the Consul
    release (its CRDs and controller) and, for migration objects, for the phase guard.
    """
    if spec.FIXED_NAME is not None and name != spec.FIXED_NAME:
        raise ValueError(f"a {spec.KIND} must be named {spec.FIXED_NAME!r}; got {name!r}")
    metadata = k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels)
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=API_VERSION,
        kind=spec.KIND,
        metadata=metadata,
        spec=spec.to_spec(),
        opts=pulumi.ResourceOptions(provider=provider, parent=parent, depends_on=depends_on),
    )

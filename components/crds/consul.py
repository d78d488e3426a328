"""Typed Consul config entries (consul.hashicorp.com/v1alpha1); crds.custom_resource builds the objects.

Only the fields this program sets are modelled; each was checked against the consul-k8s CRD schema
(types, required fields, and the values the field descriptions allow where the schema has no enum).
A typo or an unknown field fails when the model is built, before anything reaches the cluster.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from . import CrdSpec, Name, _Model

API_VERSION = "consul.hashicorp.com/v1alpha1"

# Consul's `protocol` values for service-defaults and proxy-defaults.
Protocol = Literal["tcp", "http", "http2", "grpc"]
MutualTLSMode = Literal["permissive", "strict"]
IntentionAction = Literal["allow", "deny"]
# The CRDs mark timeouts `format: duration`: a Go duration such as "10s" or "1m30s".
Duration = Annotated[str, Field(pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")]


class Spec(CrdSpec):
    """A config entry's spec.

    It counts as created once consul-k8s has written it to Consul: its config-entry controller
    (control-plane/controllers/configentries/configentry_controller.go, ConfigEntryController.
    ReconcileEntry) sets the `Synced` condition True only after ConfigEntries().Set succeeded. On an
    update the old `Synced=True` stays until the new write succeeds and the status has no
    observedGeneration, so pulumi-kubernetes' await (condition/kubectl.go) cannot tell it from a
    fresh one: the wait holds for creates; see docs/concepts/phases.md on what that means per step.
    """

    API_VERSION: ClassVar[str] = API_VERSION
    WAIT_FOR: ClassVar[str | None] = "condition=Synced"


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
    WAIT_FOR: ClassVar[str | None] = None  # read by the gateway controller; no status of its own

    request_timeout: Duration | None = None
    idle_timeout: Duration | None = None

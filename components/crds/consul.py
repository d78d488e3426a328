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
    json_format: str | None = None  # an Envoy format dictionary, as JSON text


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


# --- TerminatingGateway (a config entry) ---------------------------------------------------------


class LinkedService(_Model):
    name: Name  # a service in Consul's catalog the gateway serves


class TerminatingGateway(Spec):
    """The services a terminating gateway serves. Its name is the gateway's Consul service name
    (api/v1alpha1/terminatinggateway_types.go ConsulName). The controller of consul-k8s v2.0.3
    (controllers/configentries/terminatinggateway_controller.go) also writes, with ACLs managed, the
    policy `<ns>-<service>-write-policy` (service "<service>" write, intention read) per linked service
    onto the gateway's role, and sets Synced once the entry is in Consul; `spec.deployment` stays
    unset: the chart runs the gateway (terminatingGateways)."""

    KIND: ClassVar[str] = "TerminatingGateway"

    services: list[LinkedService] = Field(min_length=1)


# --- Registration (a catalog registration, cluster-scoped) ---------------------------------------


class RegistrationWeights(_Model):
    passing: int = Field(ge=1)
    warning: int = Field(ge=1)


class RegistrationService(_Model):
    name: Name
    port: int = Field(ge=1, le=65535)
    address: str
    # A value field in consul-k8s (registration_types.go Service.Weights): left out it would reach
    # Consul as {0, 0}; Consul's own default for a service is 1/1.
    weights: RegistrationWeights = Field(default_factory=lambda: RegistrationWeights(passing=1, warning=1))


class Registration(Spec):
    """A service outside Kubernetes, written into Consul's catalog by consul-k8s v2.0.3
    (catalog/registration/registrations_controller.go Reconcile -> cache.go registerService ->
    Catalog().Register of ToCatalogRegistration: the node, its address and the service; Synced once
    written, deregistered on delete). Cluster-scoped (`+kubebuilder:resource:scope=Cluster`).

    No `check`: nothing runs a catalog check (only consul-esm does, for nodes it probes), so it would
    only state a fixed status; and copyHealthCheck parses an empty timeout or deregister duration as
    an error, which the webhook does not refuse. A service with no check is passing in Consul."""

    KIND: ClassVar[str] = "Registration"
    CLUSTER_SCOPED: ClassVar[bool] = True

    node: str = Field(min_length=1)  # required by the webhook (registration_webhook.go validateRequiredFields)
    address: str = Field(min_length=1)
    node_meta: dict[str, str] | None = None
    service: RegistrationService

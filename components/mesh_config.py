"""The Consul config entries of one phase: ProxyDefaults `global`, Mesh `mesh`, and per service its
ServiceDefaults and the ServiceIntentions of its callers.

Where they live. Without Consul Enterprise there is one Consul namespace, so consul-k8s accepts a
config entry from any Kubernetes namespace; but one entry may come from only one Kubernetes object.
The cluster-wide ones (ProxyDefaults `global`, Mesh `mesh`: consul-k8s accepts no other names) go
in Consul's own namespace, which the platform team owns. A service's ServiceDefaults and
ServiceIntentions go in that service's namespace, beside its Deployments, where its team looks for
them (`kubectl -n api get servicedefaults,serviceintentions`) and where the gateway component puts
the intentions of the service it exposes.

Order within a step: a ServiceDefaults waits for the Mesh entry (Consul refuses mutualTLSMode
permissive unless the Mesh allows it) and for the intentions naming its service as destination
(strict mTLS must never apply before the callers are allowed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from stacks.config import ServiceConfig
from stacks.phases import MeshState

from .consul_crds import (
    AccessLogs,
    IntentionDestination,
    IntentionSource,
    Mesh,
    MeshTransparentProxy,
    ProxyConfig,
    ProxyDefaults,
    ServiceDefaults,
    ServiceIntentions,
    ServiceTransparentProxy,
    Spec,
)
from .crd import custom_resource
from .kubernetes import after

# --- what each phase holds: plain data ---------------------------------------------------------


def proxy_defaults() -> ProxyDefaults:
    """Every sidecar speaks HTTP (L7 metrics and routing) and writes Envoy access logs to stdout."""
    return ProxyDefaults(config=ProxyConfig(protocol="http"), access_logs=AccessLogs(enabled=True))


def mesh(state: MeshState) -> Mesh:
    return Mesh(
        allow_enabling_permissive_mutual_tls=state.mesh.allow_enabling_permissive_mutual_tls,
        transparent_proxy=MeshTransparentProxy(mesh_destinations_only=state.mesh.mesh_destinations_only),
    )


def service_defaults(service: ServiceConfig, state: MeshState) -> ServiceDefaults:
    """Protocol http for every service; a migrating one also carries the phase's mTLS exceptions."""
    if not service.migrates:
        return ServiceDefaults(protocol="http")
    m = state.migrating
    return ServiceDefaults(
        protocol="http",
        mutual_tls_mode=m.mutual_tls_mode,
        transparent_proxy=ServiceTransparentProxy(dialed_directly=True) if m.dialed_directly else None,
    )


def intentions(services: Sequence[ServiceConfig], state: MeshState) -> dict[str, ServiceIntentions]:
    """One ServiceIntentions per called service, allowing each of its callers; keyed by destination."""
    if not state.intentions:
        return {}
    callers: dict[str, list[str]] = {}
    for s in services:
        for up in s.upstreams:
            callers.setdefault(up, []).append(s.name)
    return {
        dest: ServiceIntentions(
            destination=IntentionDestination(name=dest),
            sources=[
                IntentionSource(name=src, action="allow", description=f"{src} calls {dest}") for src in sorted(srcs)
            ],
        )
        for dest, srcs in callers.items()
    }


# --- Kubernetes objects -------------------------------------------------------------------------


@dataclass
class MeshConfigArgs:
    services: list[ServiceConfig]
    state: MeshState
    provider: k8s.Provider
    global_namespace: str  # Consul's namespace: ProxyDefaults and Mesh
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # every service's namespace, by name
    # The phase guard, the platform's readiness and the Consul release (its CRDs and controller).
    depends_on: pulumi.Output[list[pulumi.Resource]]


class MeshConfig(pulumi.ComponentResource):
    """The phase's Consul config entries, in the order Consul needs them."""

    mesh: k8s.apiextensions.CustomResource
    proxy_defaults: k8s.apiextensions.CustomResource
    service_defaults: dict[str, k8s.apiextensions.CustomResource]  # by service
    intentions: dict[str, k8s.apiextensions.CustomResource]  # by destination service

    def __init__(self, name: str, args: MeshConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=args.depends_on))
        super().__init__("consul-mesh-migration:mesh_config:MeshConfig", name, None, opts)
        by_name = {s.name: s for s in args.services}

        def entry(
            key: str, spec: Spec, entry_name: str, namespace: str, *first: pulumi.Resource
        ) -> k8s.apiextensions.CustomResource:
            return custom_resource(
                f"{name}-{key}",
                spec,
                name=entry_name,
                namespace=namespace,
                provider=args.provider,
                parent=self,
                depends_on=after(args.depends_on, *first),
            )

        self.mesh = entry("mesh", mesh(args.state), "mesh", args.global_namespace)
        self.proxy_defaults = entry("proxy-defaults", proxy_defaults(), "global", args.global_namespace)
        self.intentions = {
            dest: entry(f"{dest}-intentions", spec, dest, by_name[dest].ns, args.namespaces[by_name[dest].ns])
            for dest, spec in intentions(args.services, args.state).items()
        }
        self.service_defaults = {}
        for s in args.services:
            callers_allowed = [self.intentions[s.name]] if s.name in self.intentions else []
            self.service_defaults[s.name] = entry(
                f"{s.name}-defaults",
                service_defaults(s, args.state),
                s.name,
                s.ns,
                args.namespaces[s.ns],
                self.mesh,
                *callers_allowed,
            )
        self.register_outputs({})

    def needed_by(self, service: ServiceConfig) -> list[pulumi.Resource]:
        """What a mesh pod of `service` waits for: its ServiceDefaults and the intentions letting it call out."""
        return [
            self.service_defaults[service.name],
            *(self.intentions[u] for u in service.upstreams if u in self.intentions),
        ]

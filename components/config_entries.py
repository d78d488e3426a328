"""The Consul config entries of one step: ProxyDefaults `global`, Mesh `mesh`, and per service its
ServiceDefaults and the ServiceIntentions of its callers (what each holds: migration/entries.py).

Where they live. Without Consul Enterprise there is one Consul namespace, so consul-k8s accepts a
config entry from any Kubernetes namespace; but one entry may come from only one Kubernetes object.
The cluster-wide ones (ProxyDefaults `global`, Mesh `mesh`: consul-k8s accepts no other names) go
in Consul's own namespace, which the platform team owns. A service's ServiceDefaults and
ServiceIntentions go in that service's namespace, beside its Deployments, where its team looks for
them (`kubectl -n api get servicedefaults,serviceintentions`) and where the gateway component puts
the intentions of the service it exposes.

Order within a step: a ServiceDefaults waits for the Mesh entry (Consul refuses mutualTLSMode
permissive unless the Mesh allows it) and for the intentions naming its service as destination
(strict mTLS must never apply before the callers are allowed). Each entry counts as done once
consul-k8s has synced it to Consul (`Spec.WAIT_FOR`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from migration import entries
from migration.fleet import Fleet, Service
from migration.outside import Destination
from migration.phases import Phase
from migration.protocols import Protocol
from migration.step import Step
from migration.workloads import Workload

from .crds import custom_resource
from .crds.consul import (
    AccessLogs,
    IntentionDestination,
    IntentionSource,
    LinkedService,
    Mesh,
    MeshTransparentProxy,
    ProxyConfig,
    ProxyDefaults,
    Registration,
    RegistrationService,
    ServiceDefaults,
    ServiceIntentions,
    ServiceTransparentProxy,
    Spec,
    TerminatingGateway,
)
from .target import Gate

Entry = Callable[..., k8s.apiextensions.CustomResource]  # ConfigEntries' one way to make an entry


def proxy_defaults(protocol: Protocol | None = entries.PROTOCOL) -> ProxyDefaults:
    """Every sidecar writes Envoy access logs to stdout, in the format the precheck reads
    (migration/entries.py ACCESS_LOG_FORMAT); `protocol` is the mesh-wide one, if any
    (migration/entries.py `mesh_protocol`). consul-k8s hands the format string to Consul, which parses
    it into the format dictionary Envoy gets (agent/xds/accesslogs/accesslogs.go getLogFormat); its
    webhook refuses one that is not JSON (api/v1alpha1/proxydefaults_types.go validateAccessLogs)."""
    config = ProxyConfig(protocol=protocol) if protocol else None
    fmt = json.dumps(entries.ACCESS_LOG_FORMAT, sort_keys=True)
    return ProxyDefaults(config=config, access_logs=AccessLogs(enabled=True, json_format=fmt))


def mesh(entry: entries.MeshEntry) -> Mesh:
    return Mesh(
        allow_enabling_permissive_mutual_tls=entry.allow_enabling_permissive_mutual_tls,
        transparent_proxy=MeshTransparentProxy(mesh_destinations_only=entry.mesh_destinations_only),
    )


def service_defaults(entry: entries.ServiceDefaultsEntry) -> ServiceDefaults:
    return ServiceDefaults(
        protocol=entry.protocol,
        mutual_tls_mode=entry.mutual_tls_mode,
        transparent_proxy=ServiceTransparentProxy(dialed_directly=True) if entry.dialed_directly else None,
    )


def registration(d: Destination) -> Registration:
    """An external host in Consul's catalog, on a node of its own that only this registration uses:
    deleting it deregisters the node (consul-k8s ToCatalogDeregistration with no service or check id)."""
    assert d.host is not None
    return Registration(
        node=f"external-{d.name}",
        address=d.host,
        node_meta={"external-node": "true"},
        service=RegistrationService(name=d.name, port=d.port, address=d.host),
    )


def service_intentions(destination: str, allowed: Sequence[entries.Intention]) -> ServiceIntentions:
    return ServiceIntentions(
        destination=IntentionDestination(name=destination),
        sources=[IntentionSource(name=i.source, action="allow", description=i.description) for i in allowed],
    )


@dataclass
class ConfigEntriesArgs:
    fleet: Fleet
    target: Mapping[str, Phase]  # the phases this step selects
    # The step, once the phase guard let it through, and what comes first (the platform's readiness,
    # the Consul release with its CRDs and controller, the precheck): every entry waits for it, and
    # a ServiceDefaults' dialedDirectly depends on the phases deployed before it.
    gate: Gate
    global_namespace: str  # Consul's namespace: ProxyDefaults and Mesh
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # every service's namespace, by name
    # The terminating gateway the fleet's destinations are linked to (its Consul service name); None
    # when the fleet calls nothing outside the mesh.
    terminating_gateway: str | None = None


class ConfigEntries(pulumi.ComponentResource):
    """The step's Consul config entries, in the order Consul needs them.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    fleet: Fleet
    mesh: k8s.apiextensions.CustomResource
    proxy_defaults: k8s.apiextensions.CustomResource
    service_defaults: dict[str, k8s.apiextensions.CustomResource]  # by service
    intentions: dict[str, k8s.apiextensions.CustomResource]  # by destination service
    destinations: dict[str, list[k8s.apiextensions.CustomResource]]  # by destination outside the mesh
    terminating_gateway: k8s.apiextensions.CustomResource | None

    def __init__(self, name: str, args: ConfigEntriesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        gate = args.gate
        opts = gate.component(opts)
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:mesh_config:MeshConfig", name, None, opts)
        fleet = self.fleet = args.fleet
        self._name = name

        def entry(
            key: str,
            spec: Spec | pulumi.Output[ServiceDefaults],
            entry_name: str,
            namespace: str,
            *first: pulumi.Resource,
        ) -> k8s.apiextensions.CustomResource:
            return custom_resource(
                f"{name}-{key}",
                spec,
                kind=ServiceDefaults if isinstance(spec, pulumi.Output) else None,
                name=entry_name,
                namespace=namespace,
                parent=self,
                depends_on=gate.on(*first),
            )

        paths = self._destinations(args, entry)
        # The Mesh closes (meshDestinationsOnly) only once every destination has its way through the
        # terminating gateway: Envoy's catch-all to addresses outside the mesh goes with it.
        self.mesh = entry("mesh", mesh(entries.mesh(Step(target=args.target))), "mesh", args.global_namespace, *paths)
        self.proxy_defaults = entry(
            "proxy-defaults", proxy_defaults(entries.mesh_protocol(fleet)), "global", args.global_namespace
        )
        self.intentions = {}
        for dest, allowed in entries.intentions(fleet).items():
            ns = fleet.service(dest).namespace
            self.intentions[dest] = entry(
                f"{dest}-intentions", service_intentions(dest, allowed), dest, ns, args.namespaces[ns]
            )
        self.service_defaults = {}
        for s in fleet.services:
            callers_allowed = [self.intentions[s.name]] if s.name in self.intentions else []
            spec = gate.step.apply(lambda st, n=s.name: service_defaults(entries.service_defaults(fleet, st, n)))
            self.service_defaults[s.name] = entry(
                f"{s.name}-defaults",
                spec,
                s.name,
                s.namespace,
                args.namespaces[s.namespace],
                self.mesh,
                *callers_allowed,
            )
        self.register_outputs({})

    def _destinations(self, args: ConfigEntriesArgs, entry: Entry) -> list[pulumi.Resource]:
        """Per destination: its Registration (an external host), a ServiceDefaults (tcp) and the
        intentions of its callers, in Consul's namespace; then the TerminatingGateway entry linking
        them all. Returns what the Mesh waits for before it may close."""
        self.destinations, self.terminating_gateway = {}, None
        called = self.fleet.destinations()
        if not called:
            return []
        assert args.terminating_gateway is not None, "destinations need a terminating gateway"
        allowed = entries.destination_intentions(self.fleet)
        ns, registered = args.global_namespace, []
        for dest, (d, _) in called.items():
            objects = [
                entry(f"{dest}-destination-defaults", ServiceDefaults(protocol=entries.DESTINATION_PROTOCOL), dest, ns),
                entry(f"{dest}-destination-intentions", service_intentions(dest, allowed[dest]), dest, ns),
            ]
            if d.registered_by_program:  # cluster-scoped: no namespace
                reg = custom_resource(
                    f"{self._name}-{dest}-registration",
                    registration(d),
                    name=dest,
                    namespace=None,
                    parent=self,
                    depends_on=args.gate.on(),
                )
                registered.append(reg)
                objects.append(reg)
            self.destinations[dest] = objects
        linked = TerminatingGateway(services=[LinkedService(name=dest) for dest in called])
        # Linked once in the catalog, so the gateway has an instance to send each one to.
        self.terminating_gateway = entry("terminating-gateway", linked, args.terminating_gateway, ns, *registered)
        return [self.terminating_gateway, *(o for objects in self.destinations.values() for o in objects)]

    def needed_by(self, workload: Workload) -> list[pulumi.Resource]:
        """What a mesh version waits for: its service's ServiceDefaults, the intentions that let it call
        its upstreams, the ServiceDefaults of the upstreams it dials through service DNS, and, once it
        dials its destinations' virtual addresses, their way through the terminating gateway."""
        dials_virtual = workload.in_mesh and workload.dns == "virtual"
        return self.needed_by_service(workload.service, workload.waits_for_upstream_defaults, dials_virtual)

    def needed_by_service(
        self, s: Service, upstream_defaults: Sequence[str] | None = None, dials_virtual: bool = True
    ) -> list[pulumi.Resource]:
        """The same for a service's pods (an adopted workload's: by default every upstream's defaults,
        and the destinations' way through the gateway, since its own code decides when it dials it)."""
        dials = s.upstreams if upstream_defaults is None else upstream_defaults
        through_gateway: list[pulumi.Resource] = []
        if dials_virtual and s.destinations and self.terminating_gateway is not None:
            through_gateway = [
                self.terminating_gateway,
                *(o for d in s.destinations for o in self.destinations[d.name]),
            ]
        return [
            self.service_defaults[s.name],
            *(self.intentions[u] for u in s.upstreams if u in self.intentions),
            *(self.service_defaults[u] for u in dials),
            *through_gateway,
        ]

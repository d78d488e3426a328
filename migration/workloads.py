"""Which Deployments a fleet step runs and how each addresses its upstreams: decided once, as data.

Every service has a Kubernetes Service named after it; its Deployments are `<name>-v1` and/or
`<name>-v2` (see phases.versions). A mesh version that still dials its upstreams through
`.service.consul` starts only once those upstreams' ServiceDefaults are in Consul, so that a strict
upstream already carries the dialedDirectly exception it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .fleet import Fleet, Service
from .phases import Dns, Phase, Phases, Version, in_mesh, upstream_dns, versions


@dataclass(frozen=True)
class Workload:
    """One Deployment: a version of a service in a phase."""

    service: Service
    version: Version
    phase: Phase
    in_mesh: bool
    dns: Dns  # how it addresses its upstreams
    upstream_uris: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.version}"

    @property
    def labels(self) -> dict[str, str]:
        """The pod labels of this version: the Service selects `app`, the version tells them apart."""
        return {**selector(self.service), "version": self.version}

    @property
    def display_name(self) -> str:
        """fake-service's NAME: what a call through the gateway shows for this version."""
        return display_name(self.service.name, self.in_mesh)

    @property
    def listens_on_localhost(self) -> bool:
        """A migrating service's mesh version is reachable only through its sidecar."""
        return self.in_mesh and self.service.migrates

    @property
    def waits_for_upstream_defaults(self) -> tuple[str, ...]:
        """Upstreams whose ServiceDefaults must be in Consul before this version starts."""
        return self.service.upstreams if self.in_mesh and self.dns == "service" else ()


def selector(service: Service) -> dict[str, str]:
    """What the service's Kubernetes Service selects: every version of it."""
    return {"app": service.name}


def display_name(service: str, in_mesh: bool) -> str:
    return f"{service} (mesh)" if in_mesh else f"{service} (non-mesh)"


def upstream_uri(upstream: Service, dns: Dns) -> str:
    return f"http://{upstream.name}.{dns}.consul:{upstream.port}"


def workloads(fleet: Fleet, target: Phases) -> list[Workload]:
    """The Deployments that run after the step, in config order: the demo services' (an adopted
    service's workload is the team's, changed only through its patch: migration/adoption.py)."""
    out: list[Workload] = []
    for s in fleet.services:
        if s.adopted:
            continue
        phase = target[s.name]
        for v in versions(phase, s.migrates):
            dns = upstream_dns(phase, v, s.migrates)
            uris = (
                *(upstream_uri(fleet.service(u), dns) for u in s.upstreams),
                # Outside the mesh by its own address, or, from a mesh version's virtual phase on, by
                # the terminating gateway's virtual address for it (migration/outside.py).
                *(f"http://{d.address(dns)}" for d in s.destinations),
            )
            out.append(Workload(s, v, phase, in_mesh(v, s.migrates), dns, uris))
    return out


def catalog_synced(service: Service, phase: Phase) -> bool:
    """Catalog sync registers a service only while it has instances outside the mesh: a migrating
    service's legacy version, which only Consul's catalog can make known (discovery, permissive).

    Consul's service-sync docs: "Please ensure that Service Sync is only enabled for namespaces and
    services that are not injected". consul-k8s v2.0.3 catalog sync registers every address of the
    Service's EndpointSlices, whatever the pod (control-plane/catalog/to-consul/resource.go,
    registerServiceInstance): a mesh pod becomes a plain `.service.consul` instance too, which a
    plain-text caller would dial and a strict sidecar refuse. So from strict on (and for a service in
    the mesh from the start, always) the Service says `service-sync: "false"`; catalog sync then drops
    what it registered (resource.go Upsert -> doDelete; syncer.go deregisterRemovedServices and
    syncFull, within migration/drain.py catalog_removal_bound), while connect-inject keeps the mesh
    instances. Stepping back to permissive syncs the legacy version again.
    """
    return service.migrates and not all(in_mesh(v, True) for v in versions(phase, True))


def reachable(fleet: Fleet, start: str) -> list[str]:
    """Every service a request to `start` reaches through its upstreams (all levels), in visit order."""
    seen: list[str] = []
    todo = list(fleet.service(start).upstreams)
    while todo:
        up = todo.pop(0)
        if up in seen or up == start:
            continue
        seen.append(up)
        todo += fleet.service(up).upstreams
    return seen


def upstream_names(fleet: Fleet, target: Mapping[str, Phase]) -> list[str]:
    """The upstream NAMEs a request through the gateway meets in these phases (all levels)."""
    behind = set(reachable(fleet, fleet.exposed))
    return sorted({w.display_name for w in workloads(fleet, target) if w.service.name in behind})


def exposed_names(fleet: Fleet, target: Mapping[str, Phase]) -> list[str]:
    return sorted({w.display_name for w in workloads(fleet, target) if w.service.name == fleet.exposed})

"""The migration phases and what the mesh must hold in each: the one place that says it.

Plain data, no Pulumi imports, so the rules can be read, tested and reused (plan, policy pack)
without a Pulumi runtime.

Two kinds of service take part (see `ServiceConfig.migrates` in stacks/config.py):
- a *migrating* service (the demo's `api`) starts outside the mesh as `<name>-v1`, known to Consul
  only through catalog sync, and moves into the mesh as `<name>-v2`;
- a *meshed* service (the demo's `web`) is in the mesh from the start; `<name>-v1` dials its
  upstreams by `<up>.service.consul` (Consul DNS), `<name>-v2` by `<up>.virtual.consul`
  (transparent-proxy virtual IPs), which only works once every upstream is in the mesh.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class Phase(enum.Enum):
    """Ordered migration phases; each `pulumi up` moves at most one step."""

    DISCOVERY = "discovery"
    PERMISSIVE = "permissive"
    STRICT = "strict"
    VIRTUAL = "virtual"
    HARDENED = "hardened"

    @property
    def index(self) -> int:
        return list(Phase).index(self)

    @property
    def next(self) -> Phase | None:
        phases = list(Phase)
        return phases[self.index + 1] if self.index + 1 < len(phases) else None

    @property
    def previous(self) -> Phase | None:
        return list(Phase)[self.index - 1] if self.index > 0 else None

    def __lt__(self, other: Phase) -> bool:
        return self.index < other.index


PHASE_NAMES: tuple[str, ...] = tuple(p.value for p in Phase)

MutualTLSMode = Literal["permissive", "strict"]
UpstreamDns = Literal["service", "virtual"]


@dataclass(frozen=True)
class MigratingServiceState:
    """What a migrating service looks like in one phase."""

    legacy_runs: bool  # <name>-v1, outside the mesh
    mesh_runs: bool  # <name>-v2, in the mesh
    mutual_tls_mode: MutualTLSMode | None  # ServiceDefaults.mutualTLSMode; None: field absent
    dialed_directly: bool  # ServiceDefaults.transparentProxy.dialedDirectly


@dataclass(frozen=True)
class MeshSettings:
    """The cluster-wide `Mesh` config entry."""

    allow_enabling_permissive_mutual_tls: bool
    mesh_destinations_only: bool


@dataclass(frozen=True)
class MeshState:
    """The desired state of the mesh after `pulumi up` in one phase."""

    phase: Phase
    migrating: MigratingServiceState
    upstream_dns: UpstreamDns  # how meshed clients address their upstreams
    intentions: bool  # client -> upstream allow intentions exist
    mesh: MeshSettings

    def deployments(self, name: str, migrates: bool) -> tuple[str, ...]:
        """Names of the Deployments of service `name` that run in this phase."""
        if migrates:
            versions = [v for v, on in (("v1", self.migrating.legacy_runs), ("v2", self.migrating.mesh_runs)) if on]
        else:
            versions = ["v1" if self.upstream_dns == "service" else "v2"]
        return tuple(f"{name}-{v}" for v in versions)


_OPEN_MESH = MeshSettings(allow_enabling_permissive_mutual_tls=True, mesh_destinations_only=False)
_CLOSED_MESH = MeshSettings(allow_enabling_permissive_mutual_tls=False, mesh_destinations_only=True)

MESH_STATES: dict[Phase, MeshState] = {
    # Everything as it was: the migrating service outside the mesh, found through catalog sync.
    Phase.DISCOVERY: MeshState(
        phase=Phase.DISCOVERY,
        migrating=MigratingServiceState(legacy_runs=True, mesh_runs=False, mutual_tls_mode=None, dialed_directly=False),
        upstream_dns="service",
        intentions=True,
        mesh=_OPEN_MESH,
    ),
    # The meshed version joins beside the legacy one and accepts plain-text callers too.
    Phase.PERMISSIVE: MeshState(
        phase=Phase.PERMISSIVE,
        migrating=MigratingServiceState(
            legacy_runs=True, mesh_runs=True, mutual_tls_mode="permissive", dialed_directly=False
        ),
        upstream_dns="service",
        intentions=True,
        mesh=_OPEN_MESH,
    ),
    # Legacy version gone; only mTLS from callers allowed by intentions. Callers that still dial
    # pod IPs from DNS keep working because the service may be dialed directly.
    Phase.STRICT: MeshState(
        phase=Phase.STRICT,
        migrating=MigratingServiceState(
            legacy_runs=False, mesh_runs=True, mutual_tls_mode="strict", dialed_directly=True
        ),
        upstream_dns="service",
        intentions=True,
        mesh=_OPEN_MESH,
    ),
    # Callers switch to virtual addresses, so traffic flows through the mesh's own routing.
    Phase.VIRTUAL: MeshState(
        phase=Phase.VIRTUAL,
        migrating=MigratingServiceState(
            legacy_runs=False, mesh_runs=True, mutual_tls_mode="strict", dialed_directly=True
        ),
        upstream_dns="virtual",
        intentions=True,
        mesh=_OPEN_MESH,
    ),
    # Service-level exceptions removed; the mesh forbids permissive mode and non-mesh destinations.
    Phase.HARDENED: MeshState(
        phase=Phase.HARDENED,
        migrating=MigratingServiceState(legacy_runs=False, mesh_runs=True, mutual_tls_mode=None, dialed_directly=False),
        upstream_dns="virtual",
        intentions=True,
        mesh=_CLOSED_MESH,
    ),
}


def mesh_state(phase: Phase) -> MeshState:
    return MESH_STATES[phase]

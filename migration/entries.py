"""The Consul config entries a fleet step needs, as plain data; components/config_entries.py builds them.

- ServiceDefaults per service: its protocol (`services[i].protocol`, http by default), and for a
  migrating service the mTLS mode of its
  inbound side. `outside` keeps `permissive` (no mesh instance exists, so it changes nothing), so a
  step back from permissive deletes the mesh version while it still accepts plain text, instead of
  turning it strict mid-`up` while callers still find it in DNS.
- ServiceIntentions per called service, allowing each caller (in every phase, so the intention is
  in Consul before its service turns strict).
- Mesh: open (permissive allowed, non-mesh destinations allowed) until every service is hardened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fleet import Fleet
from .phases import Phase, inbound, mesh_closed
from .protocols import Protocol
from .step import Step, dialed_directly

MutualTLSMode = Literal["permissive", "strict"]


@dataclass(frozen=True)
class ServiceDefaultsEntry:
    protocol: Protocol
    mutual_tls_mode: MutualTLSMode | None  # None: the field is absent (the mesh default, strict)
    dialed_directly: bool


@dataclass(frozen=True)
class Intention:
    source: str
    description: str


@dataclass(frozen=True)
class MeshEntry:
    allow_enabling_permissive_mutual_tls: bool
    mesh_destinations_only: bool


PROTOCOL: Protocol = "http"  # the demo's fake-service speaks HTTP: L7 metrics, routing and access logs


def mesh_protocol(fleet: Fleet) -> Protocol | None:
    """The protocol ProxyDefaults `global` declares for every proxy of the mesh, or None (Consul's tcp).

    A mesh-wide protocol applies to every service without ServiceDefaults of its own: the team's
    other services, a VM's, a gateway's upstream. So it is declared only while the fleet is nothing
    but the program's own demo services, all HTTP (the demo stacks deployed so far keep their entry
    unchanged); as soon as the fleet holds a team's workload, each service's ServiceDefaults carries
    its protocol and ProxyDefaults none.
    """
    return PROTOCOL if not any(s.adopted for s in fleet.services) else None


def mutual_tls_mode(phase: Phase, migrates: bool) -> MutualTLSMode | None:
    if not migrates:
        return None
    side = inbound(phase, True)
    if side == "hardened":
        return None
    return "strict" if side == "strict" else "permissive"


def service_defaults(fleet: Fleet, step: Step, name: str) -> ServiceDefaultsEntry:
    s = fleet.service(name)
    return ServiceDefaultsEntry(
        protocol=s.protocol,
        mutual_tls_mode=mutual_tls_mode(step.target[name], s.migrates),
        dialed_directly=dialed_directly(fleet, step, name),
    )


def intentions(fleet: Fleet) -> dict[str, tuple[Intention, ...]]:
    """Per called service (in config order), an allow intention from each caller: the mesh's, and
    those outside it that call through a sidecar of their own (an intention names the caller by its
    certificate, so a plain-text caller has none to match)."""
    out: dict[str, tuple[Intention, ...]] = {}
    for s in fleet.services:
        callers = [*fleet.callers(s.name), *(o.name for o in fleet.outside_callers(s.name) if o.sidecar)]
        if callers:
            out[s.name] = tuple(Intention(source=c, description=f"{c} calls {s.name}") for c in callers)
    return out


# A destination's protocol for its callers' sidecars: they pass its bytes on as they are, so a TLS
# connection to an HTTPS API stays the app's own, end to end.
DESTINATION_PROTOCOL = "tcp"


def destination_intentions(fleet: Fleet) -> dict[str, tuple[Intention, ...]]:
    """Per destination outside the mesh, an allow intention from each mesh service that calls it: the
    terminating gateway lets a caller through to a linked service only by intention."""
    return {
        name: tuple(Intention(source=c, description=f"{c} calls {name}, outside the mesh") for c in callers)
        for name, (_, callers) in fleet.destinations().items()
    }


def mesh(step: Step) -> MeshEntry:
    closed = mesh_closed(step.target)
    return MeshEntry(allow_enabling_permissive_mutual_tls=not closed, mesh_destinations_only=closed)

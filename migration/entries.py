"""The Consul config entries a fleet step needs, as plain data; components/config_entries.py builds them.

- ServiceDefaults per service: its protocol (`services[i].protocol`, http by default), and for a
  migrating service the mTLS mode of its
  inbound side. `outside` keeps `permissive` (no mesh instance exists, so it changes nothing), so a
  step back from permissive deletes the mesh version while it still accepts plain text, instead of
  turning it strict mid-`up` while callers still find it in DNS.
- ServiceIntentions per called service, allowing each caller (in every phase, so the intention is
  in Consul before its service turns strict).
- Mesh: open (permissive allowed, non-mesh destinations allowed) until every service is hardened.
- ProxyDefaults: every sidecar speaks http and writes Envoy access logs in ACCESS_LOG_FORMAT.
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


# The sidecars' access-log format (ProxyDefaults accessLogs.jsonFormat): Consul's default format
# (hashicorp/consul agent/xds/accesslogs/accesslogs.go, defaultJSONFormat), so what reads that keeps
# working, plus what tells the inbound filter chains apart, which the precheck reads: the TLS version
# (none on the permissive chain and on kubelet's expose-path listeners; Consul's public listener has no
# TLS inspector, so requested_server_name is empty for mTLS callers too) and the caller's SPIFFE ID.
# Envoy renders a lone operator typed, and an unset one as null (core/v3 SubstitutionFormatString).
ACCESS_LOG_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "downstream_peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "connection_id": "%CONNECTION_ID%",
}


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

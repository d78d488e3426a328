"""What stays outside the mesh: callers that never move, and destinations the mesh calls.

An outside service (config `services[i].outside`) runs where the program puts no sidecar: a VM whose
Consul agent registers it (`vm`), a Kubernetes Job or CronJob left out of injection (`job`), a
caller in another cluster (`cluster`). It has no phase and no Deployment of the program's, and it
takes part in the call graph:

- As a caller it speaks plain text, unless it runs its own sidecar (`sidecar: true`: `consul connect
  envoy -sidecar-for <name>` on the VM, or an injected Job). A plain-text caller's every request is
  reset by a sidecar that refuses plain text, so the service it calls stays permissive at most
  (step.py `_outside_caller_rule`); the planner stops there and says what would unblock it.
- As a callee (an outside service among a mesh service's upstreams), and as an external host a mesh
  service calls (`services[i].destinations`), it is a destination: once the Mesh closes
  (meshDestinationsOnly), Envoy's catch-all chain to addresses outside the mesh is gone (Consul
  agent/xds/listeners.go, listenersFromSnapshotConnectProxy: the `original-destination` default
  filter chain exists only while the Mesh allows non-mesh destinations). A destination stays
  reachable through a terminating gateway that links it: the caller's outbound listener matches the
  gateway's virtual IP for the linked service (same function: an endpoint of kind terminating-gateway
  contributes `ServiceGatewayVirtualIPTag(<service>)`; golden
  agent/xds/testdata/listeners/transparent-proxy-terminating-gateway.latest.golden), which is what
  `<name>.virtual.consul` answers. So a caller reaches a destination by its own address until its
  `virtual` phase, and by `<name>.virtual.consul` from then on, exactly as it reaches mesh upstreams.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

OutsideKind = Literal["vm", "job", "cluster"]

# What would let a plain-text outside caller's upstream refuse plain text, per kind.
UNBLOCK: dict[OutsideKind, str] = {
    "vm": "run its own sidecar on the VM (`consul connect envoy -sidecar-for {name}`) and set sidecar: true",
    # consul-k8s v2.0.3 constants AnnotationEnableConsulDataplaneAsSidecar: the dataplane runs as a native
    # sidecar (an init container with restartPolicy Always), which Kubernetes stops when the Job's container ends.
    "job": "inject its pods (connect-inject with consul.hashicorp.com/enable-consul-dataplane-as-sidecar, so the "
    "sidecar ends with the Job) and set sidecar: true",
    "cluster": "mesh it in its own cluster (its own sidecar, through peering or the same Consul) and set sidecar: true",
}


@dataclass(frozen=True)
class Outside:
    """A service that runs outside the mesh and outside this program, as its team describes it."""

    name: str
    kind: OutsideKind
    upstreams: tuple[str, ...] = ()  # the mesh services it calls
    sidecar: bool = False  # calls through a sidecar of its own (mTLS), not in plain text
    port: int | None = None  # where mesh services call it (vm, cluster); None: nobody does

    @property
    def plain_text(self) -> bool:
        return not self.sidecar

    def unblock(self, upstream: str) -> str:
        """One clause: what would let `upstream` refuse plain text despite this caller."""
        return f"{UNBLOCK[self.kind].format(name=self.name)}, or keep {upstream!r} permissive"


@dataclass(frozen=True)
class Destination:
    """Something outside the mesh that a mesh service calls: an external host, or an outside service.

    `host` None: an outside service that is already in Consul's catalog (its own agent registered it,
    or another cluster's catalog sync), so the program registers nothing for it.
    """

    name: str  # its Consul service name
    port: int
    host: str | None = None

    @property
    def registered_by_program(self) -> bool:
        return self.host is not None

    def address(self, dns: Literal["service", "virtual"]) -> str:
        """host:port a caller dials: its own address before the caller's virtual phase, then the
        terminating gateway's virtual address for it."""
        if dns == "virtual":
            return f"{self.name}.virtual.consul:{self.port}"
        return f"{self.host or f'{self.name}.service.consul'}:{self.port}"


# What every pod reaches that the mesh never serves. consul-k8s v2.0.3 redirects every outbound TCP
# connection of an injected pod's app to Envoy's outbound listener (connect-inject/webhook/
# redirect_traffic.go iptablesConfigJSON; consul/sdk iptables.Setup: only the sidecar's UID 5995, the
# init containers' 5996, 127.0.0.1 and the ports, CIDRs and UIDs its annotations name are left out;
# UDP is never redirected, so DNS over UDP is untouched). What Envoy does not know goes through its
# catch-all `original-destination` chain, which closing the Mesh removes: these would then be cut.
# IRSA's STS call is not here: it goes to an AWS endpoint by name, a destination like any other.
LINK_LOCAL = {
    "169.254.169.254/32": "the EC2 instance metadata service (IMDS)",
    "169.254.170.23/32": "the EKS Pod Identity agent",
}


def never_through_the_mesh(service_cidr: str) -> tuple[str, ...]:
    """The CIDRs a meshed pod keeps reaching directly (the pod annotation
    consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs): the Kubernetes API, whose Service
    `kubernetes` takes the first address of the Service CIDR, and the node's link-local services."""
    api = ipaddress.ip_network(service_cidr)[1]
    return (f"{api}/32", *LINK_LOCAL)

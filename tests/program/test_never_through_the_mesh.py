"""What transparent proxy leaves alone, and what the program keeps out of it, so that closing the Mesh
never cuts off what every pod needs (migration/outside.py never_through_the_mesh).

The redirection is modelled here from its upstream code, rule for rule:
- consul-k8s v2.0.3 control-plane/connect-inject/webhook/redirect_traffic.go `iptablesConfigJSON`:
  ProxyUserID 5995 (`sidecarUserAndGroupID`, container_init.go), ExcludeUIDs 5996 (init containers),
  ProxyOutboundPort 15001, outbound exclusions only from the pod annotations
  `transparent-proxy-exclude-outbound-ports` / `-cidrs` / `-uids`, and with Consul DNS on,
  ConsulDNSIP 127.0.0.1 with ConsulDNSPort 8600 (the dataplane's DNS proxy);
- consul/sdk iptables.Setup (the version consul-k8s v2.0.3 pins is v0.18.1; its CNI plugin calls it,
  control-plane/cni/main.go): OUTPUT `-p udp|tcp -d 127.0.0.1 --dport 53` -> DNS DNAT to :8600, then
  OUTPUT `-p tcp` -> CONSUL_PROXY_OUTPUT, where the exclusions are inserted first (RETURN), then
  `--uid-owner 5995` RETURN, `-d 127.0.0.1/32` RETURN, and everything else REDIRECT --to-port 15001.
What reaches 15001 and is no upstream Envoy knows leaves through the catch-all `original-destination`
chain only while the Mesh allows it (consul agent/xds/listeners.go, listenersFromSnapshotConnectProxy).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from components.services import pod_annotations
from migration.fleet import Service
from migration.outside import never_through_the_mesh
from migration.phases import Phase
from migration.workloads import Workload

SIDECAR_UID, INIT_UID, APP_UID = 5995, 5996, 1000


@dataclass(frozen=True)
class Connection:
    proto: str  # tcp, udp
    dest: str
    port: int
    uid: int = APP_UID


def fate(c: Connection, exclude_cidrs: list[str], consul_dns: bool = True) -> str:
    """Where a pod's outbound connection goes under the rules above: 'direct', 'consul-dns' or 'envoy'."""
    if consul_dns and c.dest == "127.0.0.1" and c.port == 53:
        return "consul-dns"  # DNSChain: DNAT to 127.0.0.1:8600
    if c.proto != "tcp":
        return "direct"  # only TCP jumps to CONSUL_PROXY_OUTPUT
    ip = ipaddress.ip_address(c.dest)
    if any(ip in ipaddress.ip_network(cidr) for cidr in exclude_cidrs) or c.uid in (INIT_UID, SIDECAR_UID):
        return "direct"
    if ip == ipaddress.ip_address("127.0.0.1"):
        return "direct"
    return "envoy"


def annotation_cidrs(service_cidr: str = "172.20.0.0/16") -> list[str]:
    w = Workload(Service("web", "web"), "v2", Phase.HARDENED, True, "virtual", ("http://api.virtual.consul:9091",))
    value = pod_annotations(w, never_through_the_mesh(service_cidr))[
        "consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs"
    ]
    return value.split(",")


@pytest.mark.parametrize(
    ("what", "connection"),
    [
        ("the Kubernetes API (kubernetes.default.svc)", Connection("tcp", "172.20.0.1", 443)),
        ("EC2 instance metadata", Connection("tcp", "169.254.169.254", 80)),
        ("the EKS Pod Identity agent", Connection("tcp", "169.254.170.23", 80)),
    ],
)
def test_what_every_pod_needs_is_sent_into_the_mesh_by_default_and_kept_out_by_the_program(what, connection):
    assert fate(connection, []) == "envoy", f"{what}: redirected unless excluded, so a closed Mesh cuts it"
    assert fate(connection, annotation_cidrs()) == "direct", what


def test_dns_and_the_sidecars_own_traffic_are_left_alone_anyway():
    assert fate(Connection("udp", "172.20.0.10", 53), []) == "direct"  # kube-dns, the fallback nameserver
    assert fate(Connection("udp", "127.0.0.1", 53), []) == "consul-dns"  # the first nameserver (webhook/dns.go)
    assert fate(Connection("tcp", "10.0.2.31", 8502, uid=SIDECAR_UID), []) == "direct"  # dataplane -> servers
    assert fate(Connection("tcp", "127.0.0.1", 19000), []) == "direct"


def test_calls_to_the_mesh_and_to_destinations_still_go_through_the_sidecar():
    cidrs = annotation_cidrs()
    assert fate(Connection("tcp", "240.0.0.3", 9091), cidrs) == "envoy"  # a virtual address
    assert fate(Connection("tcp", "172.20.14.7", 9091), cidrs) == "envoy"  # another Service's ClusterIP
    assert fate(Connection("tcp", "203.0.113.10", 443), cidrs) == "envoy"  # an external API: a destination


def test_the_api_address_follows_the_clusters_service_cidr():
    assert never_through_the_mesh("10.96.0.0/16")[0] == "10.96.0.1/32"  # kind's kubernetes Service
    assert annotation_cidrs("10.100.0.0/16")[1:] == ["169.254.169.254/32", "169.254.170.23/32"]

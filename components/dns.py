"""CoreDNS forwards the `consul` domain to Consul DNS, so pods outside the mesh resolve *.service.consul.

Consul DNS has a fixed ClusterIP (chart value dns.clusterIP), so the Corefile can name it before
Consul exists. The Corefile is declared here, in full, in one place:
- eks: the CoreDNS managed add-on carries it in its configuration values; an add-on update
  re-applies the configuration instead of reverting to the EKS default.
- kubernetes (kind, kubeadm): a server-side-apply patch of the `coredns` ConfigMap's Corefile.
CoreDNS's `reload` plugin picks the change up without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from migration.drain import CONSUL_ZONE_CACHE_S

from .annotations import PATCH_FORCE
from .target import ClusterTarget, Platform

# The `.:53` server block each platform ships (EKS CoreDNS add-on; kubeadm, which kind uses),
# unchanged so that cluster DNS behaves exactly as before.
_EKS_DEFAULT = """\
.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""

_KUBEADM_DEFAULT = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def corefile(platform: Platform, consul_dns_ip: str, domain: str = "consul") -> str:
    """The cluster's default Corefile plus a server block sending `<domain>` queries to Consul DNS.

    The block's cache keeps an answer at most `CONSUL_ZONE_CACHE_S`: a version being deleted keeps
    serving that long after Consul dropped it (migration/drain.py). Consul answers with TTL 0 and
    CoreDNS's cache keeps even those for its minimum TTL, 5 s (plugin/cache: computeTTL), so the
    cap is what bounds it if Consul's TTLs are ever raised.
    """
    base = _EKS_DEFAULT if platform == "eks" else _KUBEADM_DEFAULT
    block = f"    errors\n    cache {CONSUL_ZONE_CACHE_S}\n    forward . {consul_dns_ip}\n"
    return f"{base}{domain}:53 {{\n{block}}}\n"


@dataclass
class ConsulDnsArgs:
    # The platform, the cluster's name (eks) and its readiness: on eks the nodes are up by then, so
    # the add-on can turn ACTIVE. The Kubernetes provider comes through opts.
    target: ClusterTarget
    consul_dns_ip: str
    coredns_addon_version: str | None = None  # eks


class ConsulDnsForwarding(pulumi.ComponentResource):
    """Owns the cluster's Corefile: the CoreDNS add-on on eks, the `coredns` ConfigMap elsewhere.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    corefile: str

    def __init__(self, name: str, args: ConsulDnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:dns:ConsulDnsForwarding", name, None, opts)
        target = args.target
        self.corefile = corefile(target.platform, args.consul_dns_ip)
        if target.platform == "eks":
            if target.cluster_name is None or args.coredns_addon_version is None:
                raise ValueError("platform eks needs the cluster's name and coredns_addon_version")
            # Adopts the CoreDNS that EKS bootstraps (OVERWRITE); `preserve` keeps cluster DNS running
            # if this resource is ever deleted. Waits for the nodes (through depends_on) to turn ACTIVE.
            aws.eks.Addon(
                f"{name}-coredns",
                cluster_name=target.cluster_name,
                addon_name="coredns",
                addon_version=args.coredns_addon_version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                configuration_values=json.dumps({"corefile": self.corefile}),
                preserve=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(target.ready)),
            )
        else:
            # kubeadm wrote data.Corefile; patchForce takes that one field over. On delete the Corefile
            # stays as it is (retain_on_delete): dropping the field would leave CoreDNS without config.
            k8s.core.v1.ConfigMapPatch(
                f"{name}-coredns",
                metadata={
                    "name": "coredns",
                    "namespace": "kube-system",
                    "annotations": {PATCH_FORCE: "true"},
                },
                data={"Corefile": self.corefile},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(target.ready), retain_on_delete=True),
            )
        self.register_outputs({"corefile": self.corefile})

"""Consul on the cluster: the `consul` namespace and the consul-k8s Helm release.

Everything that uses a Consul or Gateway API CRD must depend on `Consul.release`: the chart
installs those CRDs and the webhooks and controllers that act on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .consul_values import BOOTSTRAP_TOKEN_SECRET, PRIORITY, UI_SERVICE, ConsulSettings, chart_values
from .target import ClusterTarget

CHART_REPO = "https://helm.releases.hashicorp.com"
RELEASE_NAME = "consul"  # a real Helm release: `helm list -n consul` and `consul-k8s status` see it
NAMESPACE = "consul"


@dataclass
class ConsulArgs:
    target: ClusterTarget
    chart_version: pulumi.Input[str]
    settings: ConsulSettings


def ui_port_forward(namespace: str = NAMESPACE) -> str:
    """How to reach a ClusterIP UI: the Service serves HTTPS on 443 (TLS is on, HTTP is off)."""
    return f"kubectl -n {namespace} port-forward svc/{UI_SERVICE} 8501:443"


def lb_address(status: k8s.core.v1.outputs.ServiceStatus | None) -> str | None:
    """The first hostname (AWS) or IP (most other load balancers) a Service's load balancer reports."""
    lb = status.load_balancer if status is not None else None
    ingress = lb.ingress if lb is not None else None
    if not ingress:
        return None
    return ingress[0].hostname or ingress[0].ip


class Consul(pulumi.ComponentResource):
    """The Consul servers, connect injector, CNI plugin, API gateway controller, catalog sync, DNS and UI.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    release: k8s.helm.v3.Release
    namespace: str
    datacenter: str
    bootstrap_token_secret: str  # namespace/name of the Secret the chart writes the token to; never its value
    ui: pulumi.Output[str]  # a port-forward command (ClusterIP) or the load balancer's URL

    def __init__(self, name: str, args: ConsulArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:consul:Consul", name, None, opts)
        s = args.settings
        self.namespace = NAMESPACE
        self.datacenter = args.settings.datacenter
        self.bootstrap_token_secret = f"{NAMESPACE}/{BOOTSTRAP_TOKEN_SECRET}"

        # The gateway's LoadBalancer Service is made by Consul's controller, outside the graph. Deleting
        # the namespace waits until that Service's finalizer (the LB controller releasing the NLB) has
        # run, so the namespace must go before the controller does: it depends on target.ready.
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": NAMESPACE},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.target.ready)),
        )
        # On eks target.ready holds the load balancer controller and the default StorageClass the
        # servers' volumes need. Being a dependent of the controller means the release is uninstalled
        # (and the load balancers of its UI and mesh gateway Services released) before the controller
        # goes on `pulumi destroy`.
        priority = None
        if s.priority_class:
            priority = k8s.scheduling.v1.PriorityClass(
                f"{name}-priority",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=s.priority_class),
                value=PRIORITY,
                global_default=False,
                preemption_policy="PreemptLowerPriority",
                description="Consul's servers and connect injectors, ahead of the workloads they serve",
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=RELEASE_NAME,
                chart="consul",
                version=args.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
                namespace=ns.metadata["name"],
                values=chart_values(args.settings).to_helm(),
                timeout=900,  # servers wait for volumes, ACL and TLS init jobs run first
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.target.ready, *([priority] if priority else [])]
            ),
        )

        lb_services = [
            what
            for what, load_balanced in (("UI", s.ui_exposure != "clusterIP"), ("mesh gateway", s.mesh_gateways))
            if load_balanced
        ]
        if args.target.platform == "kubernetes" and lb_services:
            # Helm's wait counts a LoadBalancer Service ready only once it has an address.
            pulumi.log.warn(
                f"the Consul {' and '.join(lb_services)} use a LoadBalancer Service: this cluster needs a load "
                "balancer implementation (cloud-provider-kind, MetalLB), or the release times out waiting",
                resource=self,
            )

        if args.settings.ui_exposure == "clusterIP":
            self.ui = pulumi.Output.from_input(ui_port_forward())
        else:
            # The id waits for the release, so a preview that creates it does not read a missing Service.
            service = k8s.core.v1.Service.get(
                f"{name}-ui-service",
                self.release.id.apply(lambda _: f"{NAMESPACE}/{UI_SERVICE}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )
            self.ui = service.status.apply(
                lambda st: f"https://{addr}" if (addr := lb_address(st)) else f"pending; meanwhile: {ui_port_forward()}"
            )

        self.register_outputs(
            {
                "namespace": self.namespace,
                "datacenter": self.datacenter,
                "bootstrapTokenSecret": self.bootstrap_token_secret,
                "ui": self.ui,
            }
        )

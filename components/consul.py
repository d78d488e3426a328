"""Consul on the cluster, in one of three modes (ConsulArgs.mode):

- install: the `consul` namespace and the consul-k8s Helm release with its own servers;
- external: the release without servers, joined to servers that exist (the chart's externalServers),
  in the `consul` namespace the user made for the CA and token Secrets (the program neither creates
  nor deletes it);
- existing: nothing of the program's: consul-k8s is installed already (its release and namespace named
  in config); the program only reads, at preview, what the migration needs of it.

Everything that uses a Consul or Gateway API CRD must depend on `Consul.ready`: the release installs
those CRDs and the webhooks and controllers that act on them (empty in `existing`: they run already).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from .consul_values import BOOTSTRAP_TOKEN_SECRET, PRIORITY, UI_SERVICE, ConsulSettings, chart_values
from .target import ClusterTarget

Mode = Literal["install", "external", "existing"]
# consul-k8s v2.0.3: what the TerminatingGateway controller reads of the release
# (controllers/helmvalues/helpers.go GetHelmValues; templates/consul-helm-values-configmap.yaml).
HELM_VALUES = "helm-values"

CHART_REPO = "https://helm.releases.hashicorp.com"
RELEASE_NAME = "consul"  # a real Helm release: `helm list -n consul` and `consul-k8s status` see it
NAMESPACE = "consul"


@dataclass
class ConsulArgs:
    target: ClusterTarget
    chart_version: pulumi.Input[str]
    settings: ConsulSettings
    mode: Mode = "install"
    # existing: the release and its namespace; install and external: the program's `consul`, `consul`.
    release_name: str = "consul"
    namespace: str = "consul"
    # external: the Kubernetes API as the servers reach it, when it is known only once the cluster is
    # (eks: its endpoint); settings.external.auth_method_host otherwise.
    auth_method_host: pulumi.Input[str] | None = None
    # existing: the terminating gateway the release must run (the migration's destinations need one).
    existing_gateway: str | None = None


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

    release: k8s.helm.v3.Release | None  # None in `existing`: the release is not the program's
    ready: list[pulumi.Resource]  # what users of Consul's CRDs wait for
    namespace: str
    datacenter: str
    bootstrap_token_secret: str | None  # namespace/name of the Secret holding the token; never its value
    ui: pulumi.Output[str]  # a port-forward command (ClusterIP), the load balancer's URL, or where it is
    terminating_gateway: str | None  # the gateway destinations are linked to (its Consul service), if any

    def __init__(self, name: str, args: ConsulArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:consul:Consul", name, None, opts)
        self._name, self._args = name, args
        self.namespace = args.namespace
        self.datacenter = args.settings.datacenter
        self.release, self.terminating_gateway, self.ready = None, None, []
        checked: pulumi.Output[str] | None = None
        if args.mode == "existing":
            checked = self._existing()
        else:
            self._installed()
            self.ready = [r for r in (self.release,) if r is not None]
        self.register_outputs(
            {
                "namespace": self.namespace,
                "datacenter": self.datacenter,
                "bootstrapTokenSecret": self.bootstrap_token_secret,
                "ui": self.ui,
                **({"terminatingGateway": checked} if checked is not None else {}),
            }
        )

    def _installed(self) -> None:
        """install and external: the release (and in install its namespace)."""
        name, args, s = self._name, self._args, self._args.settings
        namespace: pulumi.Input[str] = self.namespace
        if args.mode == "install":
            # The gateway's LoadBalancer Service is made by Consul's controller, outside the graph.
            # Deleting the namespace waits until that Service's finalizer (the LB controller releasing
            # the NLB) has run, so the namespace must go before the controller does: it depends on
            # target.ready.
            ns = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata={"name": NAMESPACE},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.target.ready)),
            )
            namespace = ns.metadata["name"]
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
                namespace=namespace,
                values=self._values(),
                timeout=900,  # servers wait for volumes, ACL and TLS init jobs run first
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.target.ready, *([priority] if priority else [])]
            ),
        )
        self.terminating_gateway = s.terminating_gateway
        if s.external is not None:
            e = s.external
            self.bootstrap_token_secret = f"{self.namespace}/{e.token_secret[0]}"
            self.ui = pulumi.Output.from_input(f"https://{e.host}:{e.https_port}/ui/ (the external servers' own)")
            return
        self.bootstrap_token_secret = f"{NAMESPACE}/{BOOTSTRAP_TOKEN_SECRET}"
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
        if s.ui_exposure == "clusterIP":
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

    def _values(self) -> pulumi.Input[dict[str, Any]]:
        """The chart values; an Output only when the servers' way to the Kubernetes API is one."""
        s, host = self._args.settings, self._args.auth_method_host
        external = s.external
        if external is None or host is None:
            return chart_values(s).to_helm()
        return pulumi.Output.from_input(host).apply(
            lambda h: chart_values(
                dataclasses.replace(s, external=dataclasses.replace(external, auth_method_host=h))
            ).to_helm()
        )

    def _existing(self) -> pulumi.Output[str] | None:
        """existing: read what the migration needs of the release, create nothing."""
        name, args = self._name, self._args
        self.bootstrap_token_secret = None
        self.ui = pulumi.Output.from_input(f"served by the release {args.release_name} in {args.namespace}")
        if args.existing_gateway is None:
            return None
        # The release's own record of its values: there only with terminatingGateways.enabled, and read
        # by the TerminatingGateway controller on every reconcile, so it is read here, at preview, rather
        # than found missing by an entry that never syncs. Every migration object waits for the read.
        values = k8s.core.v1.ConfigMap.get(
            f"{name}-helm-values", f"{args.namespace}/{HELM_VALUES}", opts=pulumi.ResourceOptions(parent=self)
        )
        self.terminating_gateway = args.existing_gateway
        self.ready = [values]
        return values.data.apply(lambda data: existing_gateway(data, args, self.datacenter))


def existing_gateway(data: Mapping[str, str] | None, args: ConsulArgs, datacenter: str) -> str:
    """The terminating gateway of an existing release, from its `helm-values` ConfigMap; refuses a
    release that does not run `args.existing_gateway`, is another release, or serves another datacenter."""
    where = f"consul.existing: ConfigMap {args.namespace}/{HELM_VALUES} of release {args.release_name}"
    try:
        values = json.loads((data or {})["values.json"])
    except (KeyError, ValueError):
        raise pulumi.RunError(f"{where} holds no values.json: is that namespace the release's?") from None
    release = (values.get("release") or {}).get("name")
    if release != args.release_name:
        raise pulumi.RunError(f"{where} belongs to release {release!r}; set consul.existing.release to it")
    dc = (values.get("global") or {}).get("datacenter")
    if dc != datacenter:
        raise pulumi.RunError(f"{where} serves datacenter {dc!r}; set consul.datacenter to it")
    tgw = values.get("terminatingGateways") or {}
    gateways = [g.get("name") for g in tgw.get("gateways") or [] if g.get("name")]
    if not tgw.get("enabled") or args.existing_gateway not in gateways:
        runs = f"runs {', '.join(gateways)}" if tgw.get("enabled") and gateways else "runs no terminating gateway"
        raise pulumi.RunError(
            f"{where} {runs}; the destinations need {args.existing_gateway!r}: add it to terminatingGateways in "
            "the release's values, or set consul.existing.terminatingGateway"
        )
    return str(args.existing_gateway)

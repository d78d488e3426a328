"""The demo services (fake-service), as data: which Deployments run in a phase and how each is built.

Every service in the config gets a ServiceAccount and a Service named after it; its Deployments are
`<name>-v1` and/or `<name>-v2`, as the phase's MeshState says. A version's Deployment is the same in
every phase it runs in, so a phase change only ever creates or deletes whole Deployments: Pulumi
creates the new one and waits for it to be ready (the Kubernetes provider awaits Deployments) and
deletes the one it replaces only at the end of the `up`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from stacks.config import ServiceConfig
from stacks.phases import MeshState

from .kubernetes import after

Version = Literal["v1", "v2"]

INJECT = "consul.hashicorp.com/connect-inject"
TRANSPARENT_PROXY = "consul.hashicorp.com/transparent-proxy"
# The app of a migrating service's mesh version listens on localhost only; the injector rewrites
# its HTTP probes to go through Envoy, which forwards them to localhost.
OVERWRITE_PROBES = "consul.hashicorp.com/transparent-proxy-overwrite-probes"
# The pod's DNS goes to Consul DNS (through the dataplane), so <up>.virtual.consul resolves.
CONSUL_DNS = "consul.hashicorp.com/consul-dns"

HEALTH_PATH = "/health"  # fake-service answers 200 here
RUN_AS_USER = 1000  # the image has no USER (root); its static binary runs as any user


@dataclass(frozen=True)
class Workload:
    """One Deployment of a demo service, decided from the config and the phase: plain data."""

    service: ServiceConfig
    version: Version
    in_mesh: bool
    upstream_uris: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.service.name}-{self.version}"

    @property
    def display_name(self) -> str:
        """fake-service's NAME: what a curl through the gateway shows for this version."""
        return display_name(self.service.name, self.in_mesh)

    @property
    def listen_addr(self) -> str:
        # A migrating service's mesh version is reachable only through its sidecar.
        host = "127.0.0.1" if self.in_mesh and self.service.migrates else "0.0.0.0"
        return f"{host}:{self.service.port}"

    def annotations(self) -> dict[str, str]:
        if not self.in_mesh:
            return {INJECT: "false"}  # outside the mesh, known to Consul only through catalog sync
        out = {INJECT: "true", TRANSPARENT_PROXY: "true", OVERWRITE_PROBES: "true"}
        if self.upstream_uris:
            out[CONSUL_DNS] = "true"
        return out

    def env(self) -> dict[str, str]:
        return {
            "NAME": self.display_name,
            "MESSAGE": f"Hello from {self.name}",
            "LISTEN_ADDR": self.listen_addr,
            "UPSTREAM_URIS": ",".join(self.upstream_uris),
        }


def display_name(service: str, in_mesh: bool) -> str:
    return f"{service} (mesh)" if in_mesh else f"{service} (non-mesh)"


def in_mesh(service: ServiceConfig, version: Version) -> bool:
    """Only v1 of a migrating service runs outside the mesh."""
    return not (service.migrates and version == "v1")


def upstream_uri(upstream: ServiceConfig, version: Version) -> str:
    # v1 clients find upstreams through Consul DNS service lookups; v2 clients use the mesh's
    # virtual addresses, which only answer for services in the mesh.
    dns = "service" if version == "v1" else "virtual"
    return f"http://{upstream.name}.{dns}.consul:{upstream.port}"


def workloads(services: Sequence[ServiceConfig], state: MeshState) -> list[Workload]:
    """The Deployments that run in `state`'s phase, in config order."""
    by_name = {s.name: s for s in services}
    out: list[Workload] = []
    for s in services:
        for deployment in state.deployments(s.name, s.migrates):
            version: Version = "v1" if deployment.endswith("-v1") else "v2"
            uris = tuple(upstream_uri(by_name[u], version) for u in s.upstreams)
            out.append(Workload(service=s, version=version, in_mesh=in_mesh(s, version), upstream_uris=uris))
    return out


# --- Kubernetes objects ---------------------------------------------------------------------------


@dataclass
class DemoServicesArgs:
    services: list[ServiceConfig]
    state: MeshState
    image: str
    provider: k8s.Provider
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # by name; must hold every service's namespace
    # The phase guard, the platform's readiness and the Consul release: nothing is registered
    # before a refused step has failed the `up`.
    depends_on: pulumi.Output[list[pulumi.Resource]]
    # Per service: the config entries its mesh pods need first (its ServiceDefaults, so a new
    # permissive version accepts plain-text callers from its first request; its callers' intentions).
    config_entries: Mapping[str, Sequence[pulumi.Resource]]


def _security_context() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def _pod_security_context() -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def deployment_spec(w: Workload, image: str) -> k8s.apps.v1.DeploymentSpecArgs:
    labels = {"app": w.service.name, "version": w.version}
    port = w.service.port
    container = k8s.core.v1.ContainerArgs(
        name=w.service.name,
        image=image,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=port)],
        env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in w.env().items()],
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port=port),
            period_seconds=5,
            failure_threshold=3,
        ),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "32Mi"},
            limits={"cpu": "200m", "memory": "64Mi"},
        ),
        # fake-service exits at once on SIGTERM; the pause lets endpoints and Consul drop the pod first.
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(exec_=k8s.core.v1.ExecActionArgs(command=["sleep", "5"]))
        ),
        security_context=_security_context(),
    )
    return k8s.apps.v1.DeploymentSpecArgs(
        replicas=w.service.replicas,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
        # Never below the wanted count while a version's pods are replaced (an image bump, say).
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
        ),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=w.annotations()),
            spec=k8s.core.v1.PodSpecArgs(
                service_account_name=w.service.name,  # Consul's ACL login maps it to the service identity
                # The sidecar logs in to Consul with the token; outside the mesh nothing needs it.
                automount_service_account_token=w.in_mesh,
                security_context=_pod_security_context(),
                containers=[container],
            ),
        ),
    )


class DemoServices(pulumi.ComponentResource):
    """ServiceAccounts, Services and this phase's Deployments of every demo service."""

    deployments: dict[str, k8s.apps.v1.Deployment]  # by Deployment name (api-v1, ...)
    services: dict[str, k8s.core.v1.Service]  # by service name

    def __init__(self, name: str, args: DemoServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=args.depends_on))
        super().__init__("consul-mesh-migration:services:DemoServices", name, None, opts)
        self.deployments = {}
        self.services = {}
        accounts: dict[str, k8s.core.v1.ServiceAccount] = {}

        for s in args.services:
            ns = args.namespaces[s.ns]
            meta = k8s.meta.v1.ObjectMetaArgs(name=s.name, namespace=s.ns, labels={"app": s.name})
            accounts[s.name] = k8s.core.v1.ServiceAccount(
                f"{name}-{s.name}-account",
                metadata=meta,
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=after(args.depends_on, ns)),
            )
            # One Service for every version: in permissive both api-v1 and api-v2 serve behind `api`.
            self.services[s.name] = k8s.core.v1.Service(
                f"{name}-{s.name}-service",
                metadata=meta,
                spec=k8s.core.v1.ServiceSpecArgs(
                    selector={"app": s.name},
                    ports=[k8s.core.v1.ServicePortArgs(name="http", port=s.port, target_port=s.port)],
                ),
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=after(args.depends_on, ns)),
            )

        for w in workloads(args.services, args.state):
            s = w.service
            # The injector registers a pod through the Service selecting it, and the sidecar logs in
            # as the ServiceAccount: both exist first. Mesh pods also wait for their config entries.
            needs: list[pulumi.Resource] = [args.namespaces[s.ns], accounts[s.name], self.services[s.name]]
            if w.in_mesh:
                needs += list(args.config_entries.get(s.name, ()))
            self.deployments[w.name] = k8s.apps.v1.Deployment(
                f"{name}-{w.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=w.name, namespace=s.ns, labels={"app": s.name, "version": w.version}
                ),
                spec=deployment_spec(w, args.image),
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.provider, depends_on=after(args.depends_on, *needs)
                ),
            )
        self.register_outputs({})


# --- what to check before advancing -----------------------------------------------------------------


def upstream_names(services: Sequence[ServiceConfig], state: MeshState, exposed: str) -> list[str]:
    """The upstream NAMEs a request through the gateway to `exposed` meets in this phase (all levels)."""
    by_name = {s.name: s for s in services}
    running = workloads(services, state)
    seen: list[str] = []
    todo = list(by_name[exposed].upstreams)
    while todo:
        up = todo.pop(0)
        if up in seen or up == exposed:
            continue
        seen.append(up)
        todo += by_name[up].upstreams
    return sorted({w.display_name for w in running if w.service.name in seen})


def verify(
    services: Sequence[ServiceConfig], state: MeshState, exposed: str, url: str, stack: str
) -> dict[str, object]:
    """The stack output `verify`: the checks that say this phase is done and the next may start."""
    # fake-service answers JSON; upstream_calls nests one level per hop.
    names = "jq -r '.. | .upstream_calls? // empty | .[] | .name'"
    nxt = state.phase.next
    return {
        "curl": f"for i in $(seq 20); do curl -s {url}; done | {names} | sort | uniq -c",
        "expectUpstreams": upstream_names(services, state, exposed),
        "expectService": sorted({w.display_name for w in workloads(services, state) if w.service.name == exposed}),
        "configEntries": "kubectl get servicedefaults,serviceintentions,proxydefaults,mesh -A",
        "next": f"make up STACK={stack} PHASE={nxt.value}" if nxt else "done: the migration is complete",
    }

"""The demo services (fake-service): a ServiceAccount and a Service per service, and the Deployments
that migration/workloads.py says run in this step.

A phase change creates or deletes whole Deployments (a migrating caller's v2 rolls once, when it
starts dialing virtual addresses): Pulumi creates the new one and waits for it to be ready (the
Kubernetes provider awaits Deployments) and deletes the one it replaces only at the end of the `up`.
A version being deleted keeps serving for `drain.PRE_STOP_S` (migration/drain.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from migration import drain
from migration.fleet import Fleet
from migration.phases import Phase
from migration.workloads import Workload, catalog_synced, selector, workloads

from .annotations import (
    CONSUL_DNS,
    INJECT,
    OVERWRITE_PROBES,
    SERVICE_SYNC,
    SIDECAR_SHUTDOWN_GRACE,
    TPROXY_EXCLUDE_OUTBOUND_CIDRS,
    TRANSPARENT_PROXY,
)
from .config_entries import ConfigEntries
from .pod_security import restricted_container, restricted_pod
from .target import Gate

HEALTH_PATH = "/health"  # fake-service answers 200 here
RUN_AS_USER = 1000  # the image has no USER (root); its static binary runs as any user


def pod_annotations(w: Workload, direct: Sequence[str] = ()) -> dict[str, str]:
    """`direct`: the CIDRs the pod reaches without its sidecar (migration/outside.py never_through_the_mesh)."""
    if not w.in_mesh:
        return {INJECT: "false"}  # outside the mesh, known to Consul only through catalog sync
    out = {INJECT: "true", TRANSPARENT_PROXY: "true", OVERWRITE_PROBES: "true"}
    if direct:
        out[TPROXY_EXCLUDE_OUTBOUND_CIDRS] = ",".join(direct)
    if w.upstream_uris:
        out[CONSUL_DNS] = "true"
    out[SIDECAR_SHUTDOWN_GRACE] = str(drain.TERMINATION_GRACE_S)
    return out


def env(w: Workload) -> dict[str, str]:
    host = "127.0.0.1" if w.listens_on_localhost else "0.0.0.0"
    return {
        "NAME": w.display_name,
        "MESSAGE": f"Hello from {w.name}",
        "LISTEN_ADDR": f"{host}:{w.service.port}",
        "UPSTREAM_URIS": ",".join(w.upstream_uris),
    }


@dataclass
class DemoServicesArgs:
    fleet: Fleet
    target: Mapping[str, Phase]
    gate: Gate  # the phase guard's verdict (nothing is registered before it passed), the platform and Consul
    image: str
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # by name; must hold every service's namespace
    config: ConfigEntries  # the config entries each mesh version waits for
    direct: Sequence[str] = ()  # CIDRs meshed pods reach without their sidecar (never_through_the_mesh)


def deployment_spec(w: Workload, image: str, direct: Sequence[str] = ()) -> k8s.apps.v1.DeploymentSpecArgs:
    labels = w.labels
    port = w.service.port
    container = k8s.core.v1.ContainerArgs(
        name=w.service.name,
        image=image,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=port)],
        env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env(w).items()],
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port=port),
            period_seconds=5,
            failure_threshold=3,
        ),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "32Mi"},
            limits={"cpu": "200m", "memory": "64Mi"},
        ),
        # fake-service exits at once on SIGTERM; it keeps serving until Consul and DNS have dropped
        # the pod. The kubelet's own sleep action needs nothing from the image.
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(sleep=k8s.core.v1.SleepActionArgs(seconds=drain.PRE_STOP_S))
        ),
        security_context=restricted_container(),
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
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=pod_annotations(w, direct)),
            spec=k8s.core.v1.PodSpecArgs(
                service_account_name=w.service.name,  # Consul's ACL login maps it to the service identity
                # The sidecar logs in to Consul with the token; outside the mesh nothing needs it.
                automount_service_account_token=w.in_mesh,
                security_context=restricted_pod(RUN_AS_USER),
                termination_grace_period_seconds=drain.TERMINATION_GRACE_S,
                containers=[container],
            ),
        ),
    )


class DemoServices(pulumi.ComponentResource):
    """ServiceAccounts, Services and this step's Deployments of every service.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    deployments: dict[str, k8s.apps.v1.Deployment]  # by Deployment name (api-v1, ...)
    services: dict[str, k8s.core.v1.Service]  # by service name

    def __init__(self, name: str, args: DemoServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        gate = args.gate
        opts = gate.component(opts)
        # Children wait for the guard itself; what they need of Consul they reach through their config
        # entries (a mesh version waits for its ServiceDefaults, which waits for the release).
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:services:DemoServices", name, None, opts)
        self.deployments = {}
        self.services = {}
        accounts: dict[str, k8s.core.v1.ServiceAccount] = {}

        for s in args.fleet.services:
            if s.adopted:  # the team's own: the program never creates its Service or ServiceAccount
                continue
            ns = args.namespaces[s.namespace]
            meta = k8s.meta.v1.ObjectMetaArgs(name=s.name, namespace=s.namespace, labels={"app": s.name})
            child = pulumi.ResourceOptions(parent=self, depends_on=gate.verdict(ns))
            accounts[s.name] = k8s.core.v1.ServiceAccount(f"{name}-{s.name}-account", metadata=meta, opts=child)
            # One Service for every version: in permissive both api-v1 and api-v2 serve behind `api`.
            synced = "true" if catalog_synced(s, args.target[s.name]) else "false"
            service_meta = k8s.meta.v1.ObjectMetaArgs(
                name=s.name, namespace=s.namespace, labels={"app": s.name}, annotations={SERVICE_SYNC: synced}
            )
            self.services[s.name] = k8s.core.v1.Service(
                f"{name}-{s.name}-service",
                metadata=service_meta,
                spec=k8s.core.v1.ServiceSpecArgs(
                    selector=selector(s),
                    ports=[k8s.core.v1.ServicePortArgs(name="http", port=s.port, target_port=s.port)],
                ),
                opts=child,
            )

        for w in workloads(args.fleet, args.target):
            s = w.service
            # The injector registers a pod through the Service selecting it, and the sidecar logs in
            # as the ServiceAccount: both exist first. Mesh pods also wait for their config entries.
            needs: list[pulumi.Resource] = [args.namespaces[s.namespace], accounts[s.name], self.services[s.name]]
            if w.in_mesh:
                needs += args.config.needed_by(w)
            self.deployments[w.name] = k8s.apps.v1.Deployment(
                f"{name}-{w.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=w.name, namespace=s.namespace, labels=w.labels),
                spec=deployment_spec(w, args.image, args.direct),
                opts=pulumi.ResourceOptions(parent=self, depends_on=gate.verdict(*needs)),
            )
        self.register_outputs({})

"""The composition: which components a stack builds on its platform, and how they are wired.

Order matters and is expressed in the graph: platform -> Consul -> gateway -> migration objects.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.adoption import AdoptedWorkloads, AdoptedWorkloadsArgs
from components.checks import NAME as CHECKS
from components.checks import MeshChecks, MeshChecksArgs
from components.cluster import EksCluster, EksClusterArgs, eks_cluster_name
from components.config_entries import ConfigEntries, ConfigEntriesArgs
from components.consul import Consul, ConsulArgs
from components.consul_values import TERMINATING_GATEWAY, ConsulSettings, ExternalSettings
from components.dns import ConsulDnsArgs, ConsulDnsForwarding
from components.gateway import ApiGateway, ApiGatewayArgs
from components.iam import Iam
from components.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.network import Network, NetworkArgs
from components.services import DemoServices, DemoServicesArgs
from components.snapshots import ConsulSnapshots, ConsulSnapshotsArgs
from components.target import ClusterTarget, ExistingCluster, ExistingClusterArgs, Gate
from meshcheck import mesh_check
from meshcheck.expectation import Verify
from migration.outside import never_through_the_mesh
from migration.step import Step, dialed_directly

from .config import PROJECT, ConfigError, StackConfig
from .gate import check_patch_force, deployed_outputs, live_gate, phase_gate, version_gate
from .outputs import record, verify


def check_environment(cfg: StackConfig) -> None:
    """Config that can only be checked against this machine; raises before any resource exists."""
    if (
        cfg.platform == "kubernetes"
        and cfg.cluster.kubeconfig
        and not os.path.exists(os.path.expanduser(cfg.cluster.kubeconfig))
    ):
        raise ConfigError(
            f"config {PROJECT}:cluster.kubeconfig: got {cfg.cluster.kubeconfig!r}; no such file "
            "(give the path of a kubeconfig, or leave it unset to use $KUBECONFIG or ~/.kube/config)"
        )
    if any(s.workload is not None for s in cfg.services):
        check_patch_force()


def build(cfg: StackConfig) -> dict[str, Any]:
    """Build every component for `cfg` and return the stack outputs."""
    check_environment(cfg)
    outputs: dict[str, Any] = {}
    deployed = deployed_outputs()
    gate = phase_gate(cfg, deployed)
    pinned = version_gate(cfg, deployed)
    target, eks = _platform(cfg, outputs, pinned)
    consul = _consul(cfg, target, outputs, pinned)
    if eks is not None and cfg.snapshots_enabled():
        _snapshots(cfg, eks, consul, target, outputs)
    gateway = _gateway(cfg, target, consul, outputs)
    applied = _migration(cfg, target, consul, gateway, gate, outputs)
    record(cfg, gate, applied, outputs)
    return outputs


def _platform(
    cfg: StackConfig, outputs: dict[str, Any], pinned: pulumi.Output[dict[str, str]]
) -> tuple[ClusterTarget, EksCluster | None]:
    if cfg.platform == "eks":
        return _eks(cfg, outputs, pinned)
    existing = ExistingCluster(
        "cluster", ExistingClusterArgs(kubeconfig=cfg.cluster.kubeconfig, context=cfg.cluster.context)
    )
    return existing.target(), None


def _eks(
    cfg: StackConfig, outputs: dict[str, Any], pinned: pulumi.Output[dict[str, str]]
) -> tuple[ClusterTarget, EksCluster]:
    """VPC -> EKS with managed nodes and EBS CSI -> AWS Load Balancer Controller (issue 3).

    The controller waits for the nodes; whatever creates a Service waits for `ready` (the controller
    and the default StorageClass), so destroy removes load balancers before the controller and the
    controller before the nodes, the cluster and the VPC.
    """
    n, c, v = cfg.network, cfg.cluster, cfg.versions
    name = eks_cluster_name(pulumi.get_project(), pulumi.get_stack())
    iam = Iam(stack=pulumi.get_stack(), cluster_name=name, boundary=c.permissions_boundary_arn)
    public, private = n.subnet_cidrs()
    network = Network(
        "network",
        NetworkArgs(
            cidr=str(n.cidr),
            public_subnets=[str(s) for s in public],
            private_subnets=[str(s) for s in private],
            nat_gateways=n.nat_gateways,
            cluster_name=name,
            protect=c.protect,
            iam=iam,
            flow_log_retention_days=n.flow_log_retention_days if n.flow_logs else None,
        ),
    )
    cluster = EksCluster(
        "cluster",
        EksClusterArgs(
            cluster_name=name,
            kubernetes_version=pinned.apply(lambda p: p["kubernetes"]),  # one minor at a time
            network=network,
            instance_types=list(c.instance_types),
            capacity_type=c.capacity_type,
            min_size=c.min_size,
            desired_size=c.desired_size,
            max_size=c.max_size,
            grants=c.grants(),
            public_access_cidrs=[str(r) for r in c.public_access_cidrs],
            log_types=list(c.log_types),
            log_retention_days=c.log_retention_days,
            service_cidr=str(c.service_cidr),
            ebs_csi_addon_version=v.ebs_csi_addon,
            kube_proxy_addon_version=v.kube_proxy_addon,
            vpc_cni_addon_version=pinned.apply(lambda p: p["vpcCniAddon"]),
            protect=c.protect,
            iam=iam,
            # Consul's servers never run on Spot: with Spot nodes they get on-demand ones of their own.
            server_nodes=cfg.consul.server_replicas if c.capacity_type == "SPOT" else 0,
        ),
    )
    controller = LoadBalancerController(
        "lb-controller",
        LoadBalancerControllerArgs(cluster=cluster, chart_version=v.lb_controller_chart),
        opts=pulumi.ResourceOptions(providers=[cluster.provider]),
    )
    outputs["clusterName"] = cluster.cluster_name
    outputs["vpcId"] = network.vpc_id
    outputs["kubeconfig"] = cluster.kubeconfig  # a secret
    target = ClusterTarget(
        platform="eks",
        provider=cluster.provider,
        ready=[controller.release, cluster.default_storage_class],
        cluster_name=cluster.cluster_name,
        # Not a secret: the endpoint's URL, which servers outside the cluster validate tokens at.
        api_server=pulumi.Output.unsecret(cluster.kubeconfig.apply(_server_of)),
    )
    return target, cluster


def _server_of(kubeconfig: str | dict[str, Any]) -> str:
    doc = json.loads(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    return str(doc["clusters"][0]["cluster"]["server"])


def _consul(
    cfg: StackConfig, target: ClusterTarget, outputs: dict[str, Any], pinned: pulumi.Output[dict[str, str]]
) -> Consul:
    """Consul (issue 4; issue 20: in the mode config says) and `.consul` DNS forwarding."""
    v, c = cfg.versions, cfg.consul
    fleet = cfg.fleet()
    needs_gateway = bool(fleet.destinations())
    consul = Consul(
        "consul",
        ConsulArgs(
            target=target,
            chart_version=pinned.apply(lambda p: p["consulChart"]),
            settings=ConsulSettings(
                platform=cfg.platform,
                datacenter=c.datacenter,
                server_replicas=c.server_replicas,
                dns_cluster_ip=str(c.dns_cluster_ip),
                image=v.consul_image,
                image_k8s=v.consul_k8s_image,
                image_dataplane=v.consul_dataplane_image,
                sync_namespaces=[s.ns for s in cfg.mesh_services],
                ui_exposure=c.ui.exposure,
                ui_allowed_cidrs=[str(n) for n in c.ui.allowed_cidrs],
                mesh_gateways=c.mesh_gateways,
                peering=c.peering,
                demo_prometheus=c.demo_prometheus,
                external=_external(cfg),
                terminating_gateway=TERMINATING_GATEWAY if needs_gateway and c.mode != "existing" else None,
            ),
            mode=c.mode,
            release_name=c.existing.release if c.existing else "consul",
            namespace=c.namespace,
            auth_method_host=target.api_server if c.external and not c.external.k8s_auth_method_host else None,
            existing_gateway=c.existing.terminating_gateway if c.existing and needs_gateway else None,
        ),
        opts=target.providers(),
    )
    if c.mode != "existing":  # an existing release's cluster resolves `.consul` its own way already
        ConsulDnsForwarding(
            "consul-dns",
            ConsulDnsArgs(target=target, consul_dns_ip=str(c.dns_cluster_ip), coredns_addon_version=v.coredns_addon),
            opts=target.providers(),
        )
    outputs["consulUi"] = consul.ui
    outputs["bootstrapTokenSecret"] = consul.bootstrap_token_secret
    return consul


def _external(cfg: StackConfig) -> ExternalSettings | None:
    e = cfg.consul.external
    if e is None:
        return None
    return ExternalSettings(
        host=e.hosts[0],
        https_port=e.https_port,
        grpc_port=e.grpc_port,
        tls_server_name=e.tls_server_name,
        ca_secret=(e.ca_cert.secret_name, e.ca_cert.secret_key),
        token_secret=(e.bootstrap_token.secret_name, e.bootstrap_token.secret_key),
        auth_method_host=e.k8s_auth_method_host,
    )


def _snapshots(
    cfg: StackConfig, cluster: EksCluster, consul: Consul, target: ClusterTarget, outputs: dict[str, Any]
) -> None:
    """Consul's state to S3 on a schedule, and the restore to run by hand (issue 21 item 13)."""
    s = cfg.consul.snapshots
    snapshots = ConsulSnapshots(
        "snapshots",
        ConsulSnapshotsArgs(
            cluster=cluster,
            consul=consul,
            image=cfg.versions.check_image,
            schedule=s.schedule,
            retention_days=s.retention_days,
            protect=cfg.cluster.protect,
        ),
        opts=target.providers(),
    )
    outputs["snapshotBucket"] = snapshots.bucket.bucket


def _gateway(cfg: StackConfig, target: ClusterTarget, consul: Consul, outputs: dict[str, Any]) -> ApiGateway:
    """The Consul API gateway routing to the exposed service (issue 4)."""
    exposed = cfg.service(cfg.gateway.service)
    gateway = ApiGateway(
        "gateway",
        ApiGatewayArgs(
            target=target,
            consul=consul,
            scheme=cfg.gateway.scheme,
            allowed_cidrs=[str(n) for n in cfg.gateway.allowed_cidrs],
            service=exposed.name,
            service_port=exposed.port,
            service_namespace=exposed.ns,
            route_namespaces=[s.ns for s in cfg.mesh_services],
            existing_namespaces=sorted({s.ns for s in cfg.services if s.workload is not None}),
        ),
        opts=target.providers(),
    )
    outputs["gatewayUrl"] = gateway.url
    return gateway


def _migration(
    cfg: StackConfig,
    target: ClusterTarget,
    consul: Consul,
    gateway: ApiGateway,
    gate: pulumi.Output[Step],
    outputs: dict[str, Any],
) -> list[pulumi.CustomResource]:
    """Demo services and the step's Consul config entries; every object waits for `gate`.

    Returns the objects that make up the step: its Deployments and config entries.
    """
    fleet, phases = cfg.fleet(), cfg.target()
    children = target.providers()
    namespaces: dict[str, k8s.core.v1.Namespace] = dict(gateway.namespaces)
    step = gate
    adoption = None
    if any(s.adopted for s in fleet.services):
        # What the team's workloads run, read at preview and at up; nothing changes before it is judged.
        adoption = AdoptedWorkloads(
            "adoption",
            AdoptedWorkloadsArgs(
                fleet=fleet, target=phases, direct=never_through_the_mesh(str(cfg.cluster.service_cidr))
            ),
            opts=children,
        )
        namespaces.update(adoption.namespaces)
        step = live_gate(cfg, gate, adoption.lives)
    # A refused step fails `gate`, so no migration object is registered and none changes. The
    # platform's readiness (the LB controller, which must outlive the Services on destroy) and the
    # Consul release (CRDs, injector, controllers) come first too.
    first = Gate(step, [*target.ready, *consul.ready])
    checks = None
    if cfg.verify.enabled:
        checks = MeshChecks(
            CHECKS,
            MeshChecksArgs(
                fleet=fleet,
                gate=first,
                verify=check_settings(cfg),
                image=cfg.versions.check_image,
                namespaces=namespaces,
                consul_namespace=consul.namespace,
                lives=adoption.lives if adoption is not None else None,
            ),
            opts=children,
        )
    config = ConfigEntries(
        "mesh-config",
        ConfigEntriesArgs(
            fleet=fleet,
            target=phases,
            # The precheck reads the callers before any entry can tighten what they reach.
            gate=first.then(checks.precheck) if checks else first,
            global_namespace=consul.namespace,
            namespaces=namespaces,
            terminating_gateway=consul.terminating_gateway,
        ),
        opts=children,
    )
    deployments: list[pulumi.CustomResource] = []
    if any(not s.adopted for s in fleet.services):
        services = DemoServices(
            "services",
            DemoServicesArgs(
                fleet=fleet,
                target=phases,
                gate=first,
                image=cfg.versions.fake_service_image,
                namespaces=namespaces,
                config=config,
                direct=never_through_the_mesh(str(cfg.cluster.service_cidr)),
            ),
            opts=children,
        )
        deployments += services.deployments.values()
    if adoption is not None:
        deployments += adoption.patches(config, first)
    outputs["verify"] = gateway.url.apply(
        # on kind the URL comes with a port-forward hint after it
        lambda url: verify(cfg, url.split()[0], pulumi.get_stack())
    )
    outputs["dialedDirectly"] = step.apply(
        lambda st: sorted(s.name for s in fleet.services if dialed_directly(fleet, st, s.name))
    )
    applied: list[pulumi.CustomResource] = [
        *deployments,
        config.mesh,
        config.proxy_defaults,
        *config.intentions.values(),
        *config.service_defaults.values(),
        *(o for objects in config.destinations.values() for o in objects),
        *([config.terminating_gateway] if config.terminating_gateway is not None else []),
    ]
    # The step counts only once it has proven itself on the cluster, through the gateway too.
    return [checks.postcheck([*applied, *gateway.objects])] if checks else applied


def check_settings(cfg: StackConfig) -> Verify:
    v = cfg.verify
    return Verify(
        requests=v.requests,
        tolerance=v.tolerance,
        window_seconds=v.precheck_window,
        post=mesh_check.PostTimeouts(request=v.request_seconds, settle=v.settle_seconds, total=v.postcheck_seconds),
        pre=mesh_check.PreTimeouts(total=v.precheck_seconds),
        traffic=mesh_check.Traffic(success_rate=v.success_rate, min_requests=v.min_requests, window=v.traffic_seconds),
    )

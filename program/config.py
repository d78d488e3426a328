"""Typed stack config: every key, its default and its limits, read once by `load_config`.

Keys are camelCase in Pulumi config (`consul-mesh-migration:consul` = {"serverReplicas": 3}) and
snake_case here. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.access import Grant, Level
from meshcheck.mesh_check import Gateway, PostTimeouts, Precheck, PreTimeouts, Traffic, default
from migration.adoption import INJECTOR_SKIPS_NAMESPACES
from migration.fleet import AddressVariable, Adopted, Fleet, FleetError, Problem, Service, check_graph
from migration.outside import Destination, Outside, OutsideKind
from migration.phases import Phase
from migration.protocols import Protocol
from migration.sidecar import SIDECAR_PORTS
from migration.step import Step, check_step

from . import config_errors, versions

PROJECT = "consul-mesh-migration"

Cidr = ipaddress.IPv4Network
# A pattern's description is what a bad value's error line says the value must be (config_errors.py).
DnsLabel = Annotated[
    str,
    Field(
        pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="a DNS label: up to 63 lowercase letters, digits and '-', starting with a letter",
    ),
]


class ConfigError(pulumi.RunError):
    """Bad stack config. A RunError, so Pulumi prints the message without a traceback."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


def _no_overlaps(cidrs: list[Cidr], what: str) -> None:
    for i, a in enumerate(cidrs):
        for b in cidrs[i + 1 :]:
            if a.overlaps(b):
                raise ValueError(f"{what} {a} and {b} overlap")


# The retention periods CloudWatch Logs accepts, in days (PutRetentionPolicy, CloudWatch Logs API Reference).
LOG_RETENTION_DAYS = (
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365),
    *(400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
)


def _retention_days(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
        raise ValueError(f"must be a retention period CloudWatch Logs accepts, in days: {allowed}")
    return days


class NetworkConfig(_Model):
    """The VPC (platform eks)."""

    cidr: Cidr = Cidr("10.0.0.0/16")
    az_count: int = Field(default=2, ge=2, le=4)  # one public and one private subnet in each zone
    nat_gateways: Literal["single", "perAz"] = "single"
    public_subnets: list[Cidr] | None = None
    private_subnets: list[Cidr] | None = None
    flow_logs: bool = True  # VPC flow logs (accepted and rejected traffic) to CloudWatch Logs
    flow_log_retention_days: int = 7

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _retention_days(v)

    @field_validator("cidr")
    @classmethod
    def _vpc_size(cls, v: Cidr) -> Cidr:
        if not 16 <= v.prefixlen <= 24:
            raise ValueError(f"VPC CIDR {v} must be between /16 and /24 (an AWS limit)")
        return v

    @model_validator(mode="after")
    def _subnets_fit(self) -> NetworkConfig:
        public, private = self.subnet_cidrs()
        for label, subnets in (("publicSubnets", public), ("privateSubnets", private)):
            if len(subnets) != self.az_count:
                raise ValueError(f"{label} has {len(subnets)} CIDRs; azCount is {self.az_count}, give one per zone")
            for s in subnets:
                if not s.subnet_of(self.cidr):
                    raise ValueError(f"{label} CIDR {s} is outside the VPC CIDR {self.cidr}")
                if not 16 <= s.prefixlen <= 28:
                    raise ValueError(f"{label} CIDR {s} must be between /16 and /28 (an AWS subnet limit)")
        _no_overlaps(public + private, "subnets")
        return self

    def subnet_cidrs(self) -> tuple[list[Cidr], list[Cidr]]:
        """Public and private subnet CIDRs: given ones, or the VPC split in eight equal blocks."""
        if self.cidr.prefixlen > 24:  # rejected by _vpc_size; keeps this total
            return [], []
        blocks = list(self.cidr.subnets(prefixlen_diff=3))
        public = self.public_subnets if self.public_subnets is not None else blocks[: self.az_count]
        private = self.private_subnets if self.private_subnets is not None else blocks[4 : 4 + self.az_count]
        return list(public), list(private)


LogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
_PRIVATE_RANGES = [Cidr("10.0.0.0/8"), Cidr("172.16.0.0/12"), Cidr("192.168.0.0/16")]
InstanceType = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9-]*\.[0-9a-z]+$",
        description="an EC2 instance type, family.size in lowercase, such as t3.large or m6i.xlarge",
    ),
]
RoleArn = Annotated[
    str,
    Field(
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$",
        description="an IAM role ARN such as arn:aws:iam::123456789012:role/platform-admins",
    ),
]
PrincipalArn = Annotated[
    str,
    Field(
        # An access entry's principal: an IAM role (a path is allowed) or user, never an sts session.
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$",
        description=(
            "an IAM role or user ARN such as arn:aws:iam::123456789012:role/ci-deploy (not an sts assumed-role session)"
        ),
    ),
]
PolicyArn = Annotated[
    str,
    Field(
        pattern=r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$",
        description="an IAM managed policy ARN such as arn:aws:iam::123456789012:policy/platform-boundary",
    ),
]
# The VPC CNI gives every pod a VPC address; these sizes have 4 (eni-max-pods), all taken by the
# DaemonSets every node runs (aws-node, kube-proxy, ebs-csi-node, consul-cni).
_TOO_SMALL_SIZES = ("nano", "micro")


# What the nodes must hold (dev defaults, in the phase with the most pods, permissive), and why two
# t3.medium nodes do. Pod limit under the VPC CNI: ENIs x (IPv4 per ENI - 1) + 2; t3.medium and
# t3a.medium 3 x (6 - 1) + 2 = 17, t3.large 35. Requests are the charts' and add-ons' defaults.
#
#   on every node (DaemonSets)         pods   CPU    memory
#     aws-node, kube-proxy               2    125m      -
#     ebs-csi-node, consul-cni           2    105m   195Mi
#   once in the cluster
#     consul-server (x serverReplicas)   1    100m   200Mi
#     connect-injector x2, webhook-
#       cert-manager, sync-catalog       4    250m   500Mi
#     api-gateway x2                     2    200m   200Mi
#     LB controller x2 (no requests)     2      -       -
#     CoreDNS x2                         2    200m   140Mi
#     EBS CSI controller x2              2    120m   480Mi
#     demo: api-v1, api-v2, web-v1 (the
#       sidecars request nothing) + 1
#       pod a rollout adds               4    200m   128Mi
#     check Jobs to come (2 at once)     2    100m   128Mi
#   (the chart's install Jobs finish; completed pods count toward no limit)
#
# Two nodes: 19 + 2 x 4 = 27 pods of 2 x 17 = 34; requests 1.63 vCPU of 3.86 allocatable and
# 2.1 GiB of ~6.6 GiB. t3.medium fits with room for a third service; one node alone (18+ pods)
# does not, so keep two (a Spot node is replaced before it is drained). Three Consul servers need
# desiredSize 3 (one server per node). t3.large (35 pods, 8 GiB) costs twice as much for room the
# demo does not use.
ON_DEMAND_INSTANCE_TYPES = ("t3.medium",)
# Spot: several types of the same size (2 vCPU, 4 GiB, 17 pods), more capacity pools to draw from.
SPOT_INSTANCE_TYPES = ("t3.medium", "t3a.medium")


class AccessConfig(_Model):
    """One principal's access to the cluster (components/access.py says what each level grants)."""

    principal_arn: PrincipalArn
    level: Level
    namespaces: list[DnsLabel] = Field(default_factory=list)  # empty: the whole cluster

    def grant(self) -> Grant:
        return Grant(self.principal_arn, self.level, tuple(self.namespaces))


class ClusterConfig(_Model):
    """The EKS cluster (platform eks) or the existing cluster (platform kubernetes)."""

    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    # Unset: SPOT_INSTANCE_TYPES with capacity type SPOT (_default_instance_types), else these.
    instance_types: list[InstanceType] = Field(default_factory=lambda: list(ON_DEMAND_INSTANCE_TYPES), min_length=1)
    min_size: int = Field(default=2, ge=1, le=100)
    desired_size: int = Field(default=2, ge=1, le=100)
    max_size: int = Field(default=3, ge=1, le=100)
    admin_role_arns: list[RoleArn] = Field(default_factory=list)  # level admin
    access: list[AccessConfig] = Field(default_factory=list)
    permissions_boundary_arn: PolicyArn | None = None
    log_retention_days: int = 30  # the control-plane log group
    public_access_cidrs: list[Cidr] = Field(default_factory=lambda: [Cidr("0.0.0.0/0")], min_length=1)
    log_types: list[LogType] = Field(default_factory=lambda: ["api", "audit", "authenticator"])
    service_cidr: Cidr = Cidr("172.20.0.0/16")
    protect: bool = True
    kubeconfig: str | None = None
    context: str | None = None
    # platform kubernetes: the nodes Consul servers may run on (the chart places one per node).
    node_count: int = Field(default=1, ge=1, le=5000)  # 5000: the largest cluster Kubernetes supports

    @model_validator(mode="before")
    @classmethod
    def _default_instance_types(cls, data: Any) -> Any:
        if not isinstance(data, dict) or {"instanceTypes", "instance_types"} & data.keys():
            return data
        spot = data.get("capacityType", data.get("capacity_type")) == "SPOT"
        return {**data, "instanceTypes": list(SPOT_INSTANCE_TYPES)} if spot else data

    @model_validator(mode="after")
    def _sizes(self) -> ClusterConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"node counts must satisfy minSize <= desiredSize <= maxSize; got {self.min_size}, "
                f"{self.desired_size}, {self.max_size}"
            )
        return self

    @field_validator("instance_types")
    @classmethod
    def _room_for_pods(cls, v: list[str]) -> list[str]:
        small = [t for t in v if t.rsplit(".", 1)[-1] in _TOO_SMALL_SIZES]
        if small:
            raise ValueError(
                f"{', '.join(small)} runs at most 4 pods, all taken by the node's DaemonSets; "
                "allowed: small or larger sizes, such as t3.large"
            )
        return v

    @model_validator(mode="after")
    def _one_entry_per_principal(self) -> ClusterConfig:
        arns = [g.principal_arn for g in self.grants()]
        dupes = sorted({a for a in arns if arns.count(a) > 1})
        if dupes:  # EKS takes one access entry per principal (ResourceInUseException)
            raise ValueError(
                f"{', '.join(dupes)} is listed twice in cluster.access and cluster.adminRoleArns; "
                "list each principal once, with one level"
            )
        return self

    @field_validator("log_retention_days")
    @classmethod
    def _log_retention(cls, v: int) -> int:
        return _retention_days(v)

    @field_validator("log_types")
    @classmethod
    def _audit_kept(cls, v: list[str]) -> list[str]:
        # The policy pack refuses a cluster without it at every preview (policy/rules.py
        # eks_control_plane_logs): say so here, before any resource, in one line.
        if "audit" not in v:
            raise ValueError(
                f"{v} has no audit: the audit log records who did what in the cluster; allowed: any "
                "of api, audit, authenticator, controllerManager, scheduler, with audit among them"
            )
        return v

    def grants(self) -> list[Grant]:
        """Everyone with access, from config alone: adminRoleArns as level admin, then `access`."""
        return [Grant(arn, "admin") for arn in self.admin_role_arns] + [a.grant() for a in self.access]

    @field_validator("service_cidr")
    @classmethod
    def _service_range(cls, v: Cidr) -> Cidr:
        if not (12 <= v.prefixlen <= 24 and any(v.subnet_of(r) for r in _PRIVATE_RANGES)):
            raise ValueError(f"serviceCidr {v} must be a /12 to /24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        return v


class UiConfig(_Model):
    """How the Consul UI is reached: ClusterIP (port-forward) unless asked otherwise."""

    exposure: Literal["clusterIP", "internal", "public"] = "clusterIP"
    allowed_cidrs: list[Cidr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _public_needs_allow_list(self) -> UiConfig:
        if self.exposure == "public":
            if not self.allowed_cidrs:
                raise ValueError("exposure 'public' needs allowedCidrs: the CIDRs that may reach the UI")
            if any(c.prefixlen == 0 for c in self.allowed_cidrs):
                raise ValueError("exposure 'public' with 0.0.0.0/0 opens the UI to the internet; list your CIDRs")
        return self


# A Kubernetes Secret's name (a DNS subdomain) and a key in its data.
SecretName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
        description="a Kubernetes Secret name: lowercase letters, digits, '-' and '.'",
    ),
]
SecretKey = Annotated[
    str,
    Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="a Secret data key: letters, digits, '-', '_', '.'"
    ),
]
# What the chart's externalServers.hosts takes: an IP, a DNS name, or a go-netaddrs `exec=` command.
ServerHost = Annotated[
    str,
    Field(
        pattern=r"^(exec=.+|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|[0-9a-fA-F:]+)$",
        description="an IP, a DNS name or an exec= command (go-netaddrs), without a port",
    ),
]
HttpsUrl = Annotated[
    str, Field(pattern=r"^https://[^/\s]+(:\d+)?/?$", description="an https:// URL such as https://203.0.113.10:6443")
]


class SecretRef(_Model):
    """A Kubernetes Secret in Consul's namespace and its key: the chart reads the value, never the config."""

    secret_name: SecretName
    secret_key: SecretKey


class ExternalServersConfig(_Model):
    """consul.mode external: the servers the Kubernetes side joins (the chart's externalServers).

    The CA and the bootstrap token come from Secrets that must exist in Consul's namespace before the
    first `up`: the chart runs no tls-init without its own servers, and server-acl-init needs a token
    with acl:write for servers whose ACLs are bootstrapped already (consul-k8s v2.0.3
    server-acl-init-job.yaml; subcommand/server-acl-init/command.go).
    """

    hosts: list[ServerHost] = Field(min_length=1, max_length=1)  # the chart takes one (values.yaml)
    https_port: int = Field(default=8501, ge=1, le=65535)
    grpc_port: int = Field(default=8502, ge=1, le=65535)
    tls_server_name: str | None = None
    ca_cert: SecretRef
    bootstrap_token: SecretRef
    # Where the servers validate the Kubernetes tokens of consul login (the auth method's Host): by
    # default https://kubernetes.default.svc, which servers outside the cluster cannot resolve
    # (server-acl-init/connect_inject.go, defaultKubernetesHost). On eks: the cluster's endpoint.
    k8s_auth_method_host: HttpsUrl | None = Field(default=None, alias="k8sAuthMethodHost")

    @model_validator(mode="after")
    def _server_name_for_an_address(self) -> ExternalServersConfig:
        host = self.hosts[0]
        by_address = host.startswith("exec=") or _is_ip(host)
        if by_address and not self.tls_server_name:
            raise ValueError(
                f"consul.external.hosts {host!r} is not a DNS name, so the servers' certificate cannot be checked "
                "against it: set consul.external.tlsServerName (such as server.dc1.consul)"
            )
        return self


class ExistingConsulConfig(_Model):
    """consul.mode existing: the consul-k8s release already in the cluster, which the program leaves alone."""

    release: DnsLabel
    namespace: DnsLabel
    # The release's terminating gateway (terminatingGateways.gateways[].name in its values), which the
    # destinations are linked to; the program checks at preview that the release runs it.
    terminating_gateway: DnsLabel = "terminating-gateway"


ConsulMode = Literal["install", "external", "existing"]
# What each mode leaves to the Consul the program does not install.
_INSTALL_ONLY = {
    "server_replicas": "the servers are not the program's",
    "ui": "the UI is the servers' own",
    "demo_prometheus": "the UI is the servers' own",
    "snapshots": "the snapshots are of the servers the program installs; take the servers' own",
}
_EXISTING_NOT = {
    **_INSTALL_ONLY,
    "dns_cluster_ip": "its DNS is the release's own (the program leaves CoreDNS alone)",
    "mesh_gateways": "the release's own chart values decide it",
    "peering": "the release's own chart values decide it",
}
Cron = Annotated[
    str,
    Field(
        pattern=r"^(\S+\s+){4}\S+$",
        description='a five-field cron schedule (minute hour day month weekday) such as "17 * * * *"',
    ),
]


class SnapshotConfig(_Model):
    """Consul snapshots to S3 (platform eks): docs/operations/consul-state.md."""

    enabled: bool | None = None  # unset: on where they can run (eks), off elsewhere
    schedule: Cron = "17 * * * *"  # hourly, off the top of the hour
    retention_days: int = Field(default=7, ge=1, le=3650)  # S3 lifecycle: older snapshots expire


class ConsulConfig(_Model):
    """Which Consul the migration runs on: one the program installs (`install`), the Kubernetes side
    of servers that exist already (`external`), or a consul-k8s release already in the cluster
    (`existing`). docs/concepts/consul-modes.md says what the program owns in each."""

    mode: ConsulMode = "install"
    datacenter: DnsLabel = "dc1"
    server_replicas: int = Field(default=1, ge=1, le=7)
    dns_cluster_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("172.20.0.53")
    ui: UiConfig = Field(default_factory=lambda: UiConfig())
    mesh_gateways: bool = False
    peering: bool = False
    demo_prometheus: bool = False
    external: ExternalServersConfig | None = None
    existing: ExistingConsulConfig | None = None

    @model_validator(mode="after")
    def _what_the_mode_needs(self) -> ConsulConfig:
        if self.mode == "external" and self.external is None:
            raise ValueError(
                "consul.mode external needs consul.external: hosts, caCert and bootstrapToken "
                "({secretName, secretKey} of Secrets in Consul's namespace)"
            )
        if self.mode == "existing" and self.existing is None:
            raise ValueError("consul.mode existing needs consul.existing: the release and namespace of consul-k8s")
        for section in ("external", "existing"):
            if getattr(self, section) is not None and self.mode != section:
                raise ValueError(f"consul.{section} is for consul.mode {section}; consul.mode is {self.mode}")
        refused = {"external": _INSTALL_ONLY, "existing": _EXISTING_NOT}.get(self.mode, {})
        given = [k for k in refused if k in self.model_fields_set]
        if given:
            key = to_camel(given[0])
            raise ValueError(f"consul.{key} is not for consul.mode {self.mode}: {refused[given[0]]}")
        return self

    @property
    def namespace(self) -> str:
        """Consul's Kubernetes namespace: the program's `consul`, or the existing release's."""
        return self.existing.namespace if self.existing else "consul"

    snapshots: SnapshotConfig = Field(default_factory=lambda: SnapshotConfig())

    @field_validator("server_replicas")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (1, 3, 5 or 7) so the Raft quorum survives a failure")
        return v

    @model_validator(mode="after")
    def _peering_needs_mesh_gateways(self) -> ConsulConfig:
        # The chart fails otherwise: "setting global.peering.enabled to true requires meshGateway.enabled".
        if self.peering and not self.mesh_gateways:
            raise ValueError("consul.peering true needs consul.meshGateways true: peered traffic goes through them")
        return self


class GatewayConfig(_Model):
    scheme: Literal["internet-facing", "internal"] = "internet-facing"
    allowed_cidrs: list[Cidr] = Field(default_factory=lambda: [Cidr("0.0.0.0/0")], min_length=1)
    service: DnsLabel = "web"


# A service listening on a port its sidecar takes collides with it (migration/sidecar.py).
MESH_RESERVED_PORTS = SIDECAR_PORTS
# Names Consul already uses: its own servers' service (consul.service.consul) and the API gateway's.
RESERVED_SERVICE_NAMES = {
    "consul": "the name of Consul's own service (consul.service.consul)",
    "api-gateway": "the name of the API gateway's service in Consul",  # components.gateway.GATEWAY_NAME
}
# The program creates each service's namespace (and deletes it on destroy), so it must be new; and
# catalog sync skips consul, kube-system and kube-public.
_TAKEN_NAMESPACES = {
    "consul": "Consul's own",
    "default": "Kubernetes' own (it exists already)",
}


# A Kubernetes object name (DNS-1123 subdomain), such as a Deployment's.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DEMO_MIN_PORT = 1024  # fake-service runs as a non-root user (components/services.py, RUN_AS_USER)


class WorkloadConfig(_Model):
    """A workload the team runs, in the service's namespace; the program never creates, replaces or deletes it."""

    kind: Literal["Deployment", "StatefulSet"]
    name: Annotated[str, Field(pattern=_DNS_SUBDOMAIN, max_length=253)]


class UpstreamConfig(_Model):
    """An upstream whose address an environment variable of the caller holds: at `virtual` the program
    sets it to `value` with `{host}` = `<name>.virtual.consul` and `{port}` = the upstream's port."""

    name: DnsLabel
    env: Annotated[str, Field(pattern=_ENV_NAME)]
    value: str = "{host}:{port}"

    @field_validator("value")
    @classmethod
    def _template(cls, v: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if "host" not in fields or fields - {"host", "port"}:
            raise ValueError("must hold {host} and may hold {port}, such as {host}:{port} or http://{host}:{port}/v1")
        return v


# A host outside the cluster: a DNS name or an IP address, without a port.
DestinationHost = Annotated[
    str,
    Field(
        pattern=r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|[0-9a-fA-F:.]+)$",
        max_length=253,
        description="a DNS name or an IP address, without a port",
    ),
]


class DestinationConfig(_Model):
    """Something outside the mesh that a service calls (migration/outside.py): the program registers it
    in Consul as `name`, links it to a terminating gateway and allows the callers."""

    name: DnsLabel
    host: DestinationHost
    port: int = Field(ge=1, le=65535)

    def model(self) -> Destination:
        return Destination(self.name, self.port, self.host)


class ServiceConfig(_Model):
    """One service. Without `workload`, a demo service (fake-service Deployments the program creates in a
    namespace of its own); with it, the team's own workload in an existing namespace. `migrates`: starts
    outside the mesh and moves in.

    `phase` overrides the stack's `phase` for this service alone (a fleet migrates service by service).
    `outside` (vm, job, cluster) declares a service that stays outside the mesh and outside this
    program (migration/outside.py): it has no phase and no Deployment, only its calls (`upstreams`,
    in plain text unless `sidecar`) and, for vm and cluster, the `port` mesh services call it on.
    """

    name: DnsLabel
    outside: OutsideKind | None = None
    namespace: DnsLabel | None = None
    # Before the fields below: their validators read it (pydantic validates fields in order).
    workload: WorkloadConfig | None = None
    port: int = Field(default=9091, ge=1, le=65535)
    protocol: Protocol = "http"
    migrates: bool = False
    upstreams: list[DnsLabel | UpstreamConfig] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=1, le=10)
    phase: Phase | None = None
    sidecar: bool | None = None  # outside only: calls through a sidecar of its own (None: no)
    destinations: list[DestinationConfig] | None = None  # hosts outside the mesh it calls

    @field_validator("port")
    @classmethod
    def _not_the_sidecars(cls, v: int, info: ValidationInfo) -> int:
        if v in MESH_RESERVED_PORTS and not info.data.get("outside"):  # an outside service has no sidecar here
            taken = ", ".join(str(p) for p in sorted(MESH_RESERVED_PORTS))
            raise ValueError(f"taken on a meshed pod by {MESH_RESERVED_PORTS[v]}; allowed: any port except {taken}")
        if info.data.get("workload") is None and not info.data.get("outside") and v < _DEMO_MIN_PORT:
            raise ValueError(
                f"fake-service runs as a non-root user; allowed: {_DEMO_MIN_PORT}-65535 for a demo service "
                "(any port with workload)"
            )
        return v

    @field_validator("protocol")
    @classmethod
    def _demo_speaks_http(cls, v: Protocol, info: ValidationInfo) -> Protocol:
        if info.data.get("workload") is None and not info.data.get("outside") and v != "http":
            raise ValueError("fake-service serves HTTP; allowed: http for a demo service (any protocol with workload)")
        return v

    @field_validator("upstreams")
    @classmethod
    def _demo_addresses(cls, v: list[str | UpstreamConfig], info: ValidationInfo) -> list[str | UpstreamConfig]:
        named = [u.env for u in v if isinstance(u, UpstreamConfig)]
        if info.data.get("workload") is None and named:
            raise ValueError(
                f"{', '.join(named)}: a demo service gets its addresses from the program (UPSTREAM_URIS); "
                "allowed: env on a service with workload"
            )
        return v

    @field_validator("replicas")
    @classmethod
    def _demo_replicas(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("workload") is not None:
            raise ValueError("the workload's own (its Deployment or StatefulSet scales it); leave it unset")
        return v

    @field_validator("name")
    @classmethod
    def _not_consuls(cls, v: str) -> str:
        if v in RESERVED_SERVICE_NAMES:
            raise ValueError(f"{RESERVED_SERVICE_NAMES[v]}; allowed: any other DNS label")
        return v

    @model_validator(mode="after")
    def _outside_keys(self) -> ServiceConfig:
        if self.outside is None:
            if self.sidecar is not None:
                raise ValueError(
                    "sidecar is for a service outside the mesh (outside: vm, job or cluster); a service of the "
                    "mesh always has one"
                )
            return self
        own = {
            "workload": "the program adopts workloads of this cluster's mesh only",
            "migrates": "it never moves into the mesh",
            "phase": "it has no phase",
            "replicas": "it has no Deployment",
        }
        given = [k for k in own if k in self.model_fields_set]
        if given:
            raise ValueError(
                f"{given[0]} is not for a service outside the mesh ({own[given[0]]}); allowed: {_OUTSIDE_KEYS}"
            )
        if self.namespace is not None and self.outside != "job":
            raise ValueError(
                f"namespace is for a job outside the mesh (where its pods run); a {self.outside} service has none"
            )
        return self

    @model_validator(mode="after")
    def _own_namespace(self) -> ServiceConfig:
        if self.outside is not None:
            return self  # a Job's namespace is its team's: the program neither creates nor deletes it
        ns = self.ns
        source = "namespace" if self.namespace else "namespace (from the name)"
        if self.workload is not None:
            whose = INJECTOR_SKIPS_NAMESPACES.get(ns)
            if whose:
                raise ValueError(
                    f"{source} {ns!r} is {whose}; allowed: a namespace consul-k8s injects, not "
                    f"{', '.join(sorted(INJECTOR_SKIPS_NAMESPACES))}"
                )
            return self
        whose = _TAKEN_NAMESPACES.get(ns) or ("reserved for Kubernetes" if ns.startswith("kube-") else None)
        if whose:
            raise ValueError(
                f"{source} {ns!r} is {whose}; allowed: a new namespace, not {', '.join(_TAKEN_NAMESPACES)} or kube-*"
            )
        return self

    @model_validator(mode="after")
    def _adopted_port(self) -> ServiceConfig:
        if self.workload is not None and "port" not in self.model_fields_set:
            raise ValueError(f"port is required with workload ({self._workload}): the port of its Service")
        return self

    @property
    def _workload(self) -> str:
        w = self.workload
        return f"{w.kind} {self.ns}/{w.name}" if w else ""

    @property
    def ns(self) -> str:
        return self.namespace or self.name

    def model(self, outside: Mapping[str, Outside]) -> Service:
        """The service of the mesh; an upstream outside the mesh is one of its destinations."""
        names = [u if isinstance(u, str) else u.name for u in self.upstreams]
        upstreams = tuple(u for u in names if u not in outside)
        destinations = (
            *(d.model() for d in self.destinations or []),
            *(Destination(u, outside[u].port or 0) for u in names if u in outside),
        )
        addresses = tuple(
            AddressVariable(u.name, u.env, u.value) for u in self.upstreams if isinstance(u, UpstreamConfig)
        )
        workload = Adopted(self.workload.kind, self.workload.name) if self.workload else None
        return Service(
            self.name,
            self.ns,
            self.port,
            self.migrates,
            upstreams,
            self.replicas,
            destinations=destinations,
            protocol=self.protocol,
            workload=workload,
            addresses=addresses,
        )

    def outside_model(self) -> Outside:
        assert self.outside is not None
        port = self.port if "port" in self.model_fields_set else None
        return Outside(self.name, self.outside, tuple(self.upstreams_names), bool(self.sidecar), port)

    @property
    def upstreams_names(self) -> list[str]:
        return [u if isinstance(u, str) else u.name for u in self.upstreams]


_OUTSIDE_KEYS = "name, outside, upstreams, sidecar, port (vm, cluster), namespace (job)"


def _default_services() -> list[ServiceConfig]:
    return [ServiceConfig(name="api", migrates=True), ServiceConfig(name="web", upstreams=["api"])]


_SEMVER = r"^\d+\.\d+\.\d+$"
# An image reference (distribution/reference grammar): [registry[:port]/]path[:tag][@sha256:digest],
# pinned by a tag, a digest or both.
# A first component is a registry only with a dot, a port or as localhost; otherwise it is the path.
_HOST_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IMAGE_HOST = rf"(?:(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})+|localhost)(?::\d+)?/|{_HOST_LABEL}:\d+/)?"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_DIGEST = r"@sha256:[0-9a-f]{64}"
_IMAGE = rf"^{_IMAGE_HOST}{_IMAGE_PATH}(?::\w[\w.-]{{0,127}}(?:{_DIGEST})?|{_DIGEST})$"
Semver = Annotated[str, Field(pattern=_SEMVER, description="a release version such as 1.2.3")]
Image = Annotated[
    str,
    Field(
        pattern=_IMAGE,
        description="an image pinned by tag or digest, such as repo/name:1.2.3, registry.example.com:5000/name:1.2.3 "
        "or repo/name@sha256:<64 hex digits>",
    ),
]
AddonBuild = Annotated[
    str, Field(pattern=r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", description="an EKS add-on build such as v1.2.3-eksbuild.1")
]
KubernetesMinor = Annotated[str, Field(pattern=r"^1\.\d{2}$", description='a Kubernetes minor version such as "1.35"')]


class VersionsConfig(_Model):
    kubernetes: KubernetesMinor = versions.KUBERNETES
    ebs_csi_addon: AddonBuild = versions.EBS_CSI_ADDON
    coredns_addon: AddonBuild = versions.COREDNS_ADDON
    kube_proxy_addon: AddonBuild = versions.KUBE_PROXY_ADDON
    vpc_cni_addon: AddonBuild = versions.VPC_CNI_ADDON
    lb_controller_chart: Semver = versions.LB_CONTROLLER_CHART
    consul_chart: Semver = versions.CONSUL_CHART
    consul_image: Image = versions.CONSUL_IMAGE
    consul_k8s_image: Annotated[Image, Field(alias="consulK8sImage")] = versions.CONSUL_K8S_IMAGE
    consul_dataplane_image: Image = versions.CONSUL_DATAPLANE_IMAGE
    fake_service_image: Image = versions.FAKE_SERVICE_IMAGE
    check_image: Image = versions.CHECK_IMAGE

    @field_validator("consul_image", "consul_k8s_image", "consul_dataplane_image", "fake_service_image", "check_image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.endswith(":latest"):  # with a digest after it, the digest pins the image
            raise ValueError("the tag 'latest' is not a pin; name a released version or add its @sha256 digest")
        return v


class VerifyConfig(_Model):
    """The checks every `up` runs on the cluster (components/checks.py); defaults keep them within 60 s."""

    # The defaults are the check script's own (meshcheck/mesh_check.py), so they are written once.
    enabled: bool = True
    requests: int = Field(default=default(Gateway, "requests"), ge=1, le=500)  # through the API gateway
    tolerance: float = Field(default=default(Gateway, "tolerance"), ge=0, lt=1)  # k versions: >= 1/k - tolerance
    precheck_window: int = Field(default=default(Precheck, "window_seconds"), ge=60, le=86400)  # of sidecar logs
    request_seconds: float = Field(default=PostTimeouts().request, gt=0, le=60)
    settle_seconds: float = Field(default=PostTimeouts().settle, ge=0, le=300)  # retry a round while Envoy settles
    postcheck_seconds: float = Field(default=PostTimeouts().total, gt=0, le=600)
    precheck_seconds: float = Field(default=PreTimeouts().total, gt=0, le=600)
    # A team's own service: its callers' requests between two readings of their sidecars' statistics.
    success_rate: float = Field(default=Traffic().success_rate, ge=0, le=1)
    min_requests: int = Field(default=Traffic().min_requests, ge=1, le=100000)
    traffic_seconds: float = Field(default=Traffic().window, ge=0, le=300)

    @model_validator(mode="after")
    def _fits(self) -> VerifyConfig:
        if self.settle_seconds + self.request_seconds > self.postcheck_seconds:
            raise ValueError(
                f"settleSeconds {self.settle_seconds:g} + requestSeconds {self.request_seconds:g} must fit in "
                f"postcheckSeconds {self.postcheck_seconds:g}"
            )
        if self.traffic_seconds + self.request_seconds > self.postcheck_seconds:
            raise ValueError(
                f"trafficSeconds {self.traffic_seconds:g} + requestSeconds {self.request_seconds:g} must fit in "
                f"postcheckSeconds {self.postcheck_seconds:g}"
            )
        return self


class CiConfig(_Model):
    """How CI's runners (.github/workflows) reach the EKS API endpoint of this stack, if CI manages it.

    `github-hosted`: GitHub's hosted runners, whose addresses are thousands of ranges from anywhere
    (api.github.com/meta, `actions`), more than the 40 public access CIDRs EKS takes: they need the
    endpoint open (`cluster.publicAccessCidrs` 0.0.0.0/0), unless `runnerCidrs` lists the runners'
    own egress ranges (larger runners with static IPs, or self-hosted runners outside the VPC) and
    those are inside `cluster.publicAccessCidrs`. `vpc`: self-hosted runners inside the VPC (or a
    peered one) reach the private endpoint, so the public one may be narrowed at will.
    """

    runners: Literal["none", "github-hosted", "vpc"] = "none"
    runner_cidrs: list[Cidr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cidrs_for_hosted_runners(self) -> CiConfig:
        if self.runner_cidrs and self.runners != "github-hosted":
            raise ValueError(
                f"runnerCidrs is for runners github-hosted (runners outside the VPC); runners is {self.runners!r}"
            )
        return self


class StackConfig(_Model):
    phase: Phase = Phase.DISCOVERY
    platform: Literal["eks", "kubernetes"] = "eks"
    allow_phase_jump: bool = False
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig())
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig())
    consul: ConsulConfig = Field(default_factory=lambda: ConsulConfig())
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())
    services: list[ServiceConfig] = Field(default_factory=_default_services, min_length=1)
    # A service's own phase, by its name (`pulumi config set --path phases.api strict`): it stays right
    # when the services list changes. The older `services[i].phase` means the same.
    phases: dict[str, Phase] = Field(default_factory=dict)
    versions: VersionsConfig = Field(default_factory=lambda: VersionsConfig())
    verify: VerifyConfig = Field(default_factory=lambda: VerifyConfig())
    ci: CiConfig = Field(default_factory=lambda: CiConfig())

    @model_validator(mode="after")
    def _adoptions(self) -> StackConfig:
        demo = {s.ns for s in self.services if s.workload is None and s.outside is None}
        seen: dict[tuple[str, str, str], str] = {}
        for i, s in enumerate(self.services):
            if s.workload is None:
                continue
            if s.ns in demo:
                raise ValueError(
                    f"services[{i}].namespace {s.ns!r} holds demo services too: the program creates and deletes a demo "
                    "service's namespace, and never an adopted service's; allowed: demo and adopted services in "
                    "separate namespaces"
                )
            key = (s.ns, s.workload.kind, s.workload.name)
            if key in seen:
                raise ValueError(
                    f"services[{i}].workload: {s.workload.kind} {s.ns}/{s.workload.name} is adopted by "
                    f"{seen[key]!r} already; allowed: one service per workload"
                )
            seen[key] = s.name
        return self

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        self._own_phases_name_services()
        fleet = self.fleet()
        try:
            _calls_outside(self.services)
            check_graph(fleet)
        except FleetError as e:
            raise ConfigError(self.describe(e)) from None
        try:
            # What the target phases alone forbid; what a step from the deployed phases forbids is
            # checked by the phase gate, once those are known.
            check_step(fleet, Step(target=self.target()))
        except FleetError as e:
            raise ConfigError(self.describe(e, by_phase=True)) from None
        self._consul_fits_the_platform()
        if self.consul.mode != "existing":
            self._dns_ip_is_free()
        installs = self.consul.mode == "install"  # only then are the servers the chart's, one per node
        if installs and self.platform == "kubernetes" and self.consul.server_replicas > self.cluster.node_count:
            # The chart's server affinity is a required anti-affinity per node: extra servers never schedule.
            raise ValueError(
                f"consul.serverReplicas {self.consul.server_replicas} needs as many nodes (one server per node); "
                f"cluster.nodeCount is {self.cluster.node_count}: set it to the nodes of your cluster"
            )
        if self.platform == "kubernetes":
            eks_only = {
                "cluster.access": self.cluster.access or self.cluster.admin_role_arns,
                "consul.snapshots.enabled": self.consul.snapshots.enabled,
            }
            for key, value in eks_only.items():
                if value:
                    raise ValueError(
                        f"{key} is for platform eks (EKS access entries; an S3 bucket and IAM roles for "
                        "snapshots); on platform kubernetes leave it unset"
                    )
        if self.platform == "eks" and "node_count" in self.cluster.model_fields_set:
            raise ValueError(
                f"cluster.nodeCount {self.cluster.node_count} is for platform kubernetes; on eks the node group "
                f"size is cluster.desiredSize ({self.cluster.desired_size})"
            )
        if self.platform == "eks":
            if self.cluster.service_cidr.overlaps(self.network.cidr):
                raise ValueError(
                    f"cluster.serviceCidr {self.cluster.service_cidr} overlaps network.cidr {self.network.cidr}"
                )
            proxy_minor = re.sub(r"^v(\d+\.\d+)\..*$", r"\1", self.versions.kube_proxy_addon)
            if proxy_minor != self.versions.kubernetes:  # EKS refuses the add-on for another minor
                raise ValueError(
                    f"versions.kubeProxyAddon {self.versions.kube_proxy_addon} is kube-proxy for Kubernetes "
                    f"{proxy_minor}, but versions.kubernetes is {self.versions.kubernetes}; allowed: a "
                    f"v{self.versions.kubernetes}.x-eksbuild.N build (aws eks describe-addon-versions "
                    f"--kubernetes-version {self.versions.kubernetes} --addon-name kube-proxy)"
                )
            unreachable = self._ci_unreachable()
            if unreachable:
                raise ValueError(unreachable)
            if (
                installs
                and self.cluster.capacity_type == "ON_DEMAND"
                and self.consul.server_replicas > self.cluster.desired_size
            ):
                # With SPOT the servers get an on-demand node group of their own, one node per server.
                raise ValueError(
                    f"consul.serverReplicas {self.consul.server_replicas} needs as many nodes (one server per "
                    f"node); cluster.desiredSize is {self.cluster.desired_size}"
                )
        return self

    @property
    def mesh_services(self) -> list[ServiceConfig]:
        """The services the mesh serves (their namespaces and Deployments); not those outside it."""
        return [s for s in self.services if not s.outside]

    def _ci_unreachable(self) -> str | None:
        """Why CI's runners could not reach the EKS API endpoint, or None (see CiConfig)."""
        allowed, ci = self.cluster.public_access_cidrs, self.ci
        if ci.runners != "github-hosted" or any(c.prefixlen == 0 for c in allowed):
            return None
        if not ci.runner_cidrs:
            return (
                f"cluster.publicAccessCidrs {', '.join(map(str, allowed))} shuts out CI's GitHub-hosted runners "
                "(ci.runners github-hosted), which come from anywhere: list your runners' egress ranges in "
                "ci.runnerCidrs (larger runners with static IPs), run runners inside the VPC (ci.runners vpc), "
                "or keep 0.0.0.0/0"
            )
        outside = [str(c) for c in ci.runner_cidrs if not any(c.subnet_of(a) for a in allowed)]
        if outside:
            return (
                f"ci.runnerCidrs {', '.join(outside)} is outside cluster.publicAccessCidrs "
                f"{', '.join(map(str, allowed))}: add it there, or CI cannot reach the EKS API"
            )
        return None

    def _dns_ip_is_free(self) -> None:
        cidr = self.cluster.service_cidr
        if self.consul.dns_cluster_ip not in cidr:
            raise ValueError(f"consul.dnsClusterIp {self.consul.dns_cluster_ip} is outside cluster.serviceCidr {cidr}")
        taken = _taken_cluster_ip(self.consul.dns_cluster_ip, cidr)
        if taken:
            raise ValueError(
                f"consul.dnsClusterIp {self.consul.dns_cluster_ip} is {taken} in cluster.serviceCidr {cidr}; "
                f"allowed: another free address in it, such as {cidr[53]}"
            )

    def _consul_fits_the_platform(self) -> None:
        c = self.consul
        if c.mode == "existing" and self.platform == "eks":
            raise ValueError(
                "consul.mode existing is for platform kubernetes: on eks this program creates the cluster, so no "
                "consul-k8s can already run in it; use consul.mode external to join servers that exist"
            )
        if c.external is not None and self.platform == "kubernetes" and c.external.k8s_auth_method_host is None:
            raise ValueError(
                "consul.external.k8sAuthMethodHost is needed on platform kubernetes: the servers validate the "
                "cluster's service account tokens there, and outside the cluster they cannot resolve "
                "kubernetes.default.svc; give the API server's address as the servers reach it "
                "(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
            )

    def snapshots_enabled(self) -> bool:
        """Scheduled Consul snapshots: on by default where an S3 bucket can hold them, of the servers
        the program installs."""
        enabled = self.consul.snapshots.enabled
        return self.platform == "eks" and self.consul.mode == "install" if enabled is None else enabled

    def service(self, name: str) -> ServiceConfig:
        return next(s for s in self.services if s.name == name)

    def fleet(self) -> Fleet:
        outside = {s.name: s.outside_model() for s in self.services if s.outside}
        mesh = tuple(s.model(outside) for s in self.services if not s.outside)
        return Fleet(mesh, exposed=self.gateway.service, outside=tuple(outside.values()))

    def target(self) -> dict[str, Phase]:
        """Each service's phase: its own (`phases.<name>`, or `services[i].phase`), or the stack's; services
        outside the mesh have none."""
        return {s.name: self.phases.get(s.name) or s.phase or self.phase for s in self.services if not s.outside}

    def _own_phases_name_services(self) -> None:
        names = [s.name for s in self.services]
        for name, phase in self.phases.items():
            if name not in names:
                raise ConfigError(
                    f"config {PROJECT}:phases.{name}: {name!r} is not a service; allowed: {', '.join(names)}"
                )
            if self.service(name).outside:
                raise ConfigError(
                    f"config {PROJECT}:phases.{name}: {name!r} is outside the mesh ({self.service(name).outside}) "
                    "and has no phase; allowed: the services of the mesh"
                )
            listed = self.service(name).phase
            if listed is not None and listed != phase:
                raise ConfigError(
                    f"config {PROJECT}:phases.{name}: got {phase.value}, but services[{names.index(name)}].phase "
                    f"says {listed.value}; set it in one place: `pulumi config rm --path "
                    f"'services[{names.index(name)}].phase'`"
                )

    def selecting(self, phases: Mapping[str, Phase]) -> dict[str, Any]:
        """The config (camelCase keys) that selects `phases`: the stack `phase` is the least advanced
        service's, and each service ahead of it has its own under `phases`, by name (empty when none
        is ahead). A stack file that holds phases in the older list form (`services[i].phase`) gets
        its list back without them."""
        least = min(phases.values())
        ahead = {s.name: phases[s.name].value for s in self.services if s.name in phases and phases[s.name] != least}
        out: dict[str, Any] = {"phase": least.value, "phases": ahead}
        if any(s.phase is not None for s in self.services):
            out["services"] = [s.model_dump(by_alias=True, exclude_none=True, exclude={"phase"}) for s in self.services]
        return out

    def config_commands(
        self, target: Mapping[str, Phase], stack: str, before: Mapping[str, Phase] | None = None
    ) -> list[str]:
        """The `pulumi config` commands that take this stack's config (or, given `before`, the config
        that selects `before`) to the one that selects `target` (`selecting`), for stack `stack`."""
        on = f" --stack {shlex.quote(stack)}"
        want = self.selecting(target)
        commands: list[str] = []
        if before is None:  # the config as it stands
            had = {"phase": self.phase.value, "phases": {n: p.value for n, p in self.phases.items()}}
            # The older list form, once: its indexes are right for the stack file as it is now.
            commands += [
                f"pulumi config rm --path 'services[{i}].phase'{on}" for i, s in enumerate(self.services) if s.phase
            ]
        else:
            had = self.selecting(before)
        if want["phase"] != had["phase"]:
            commands.append(f"pulumi config set phase {want['phase']}{on}")
        own, had_own = want["phases"], had["phases"]
        for s in self.services:
            if s.name in own and own[s.name] != had_own.get(s.name):
                commands.append(f"pulumi config set --path phases.{s.name} {own[s.name]}{on}")
            elif s.name not in own and s.name in had_own:
                commands.append(f"pulumi config rm --path phases.{s.name}{on}")
        return commands

    def key_of(self, problem: Problem) -> str:
        """The config key a graph problem is about (`services[i].upstreams`, `gateway.service`, ...)."""
        if problem.setting == "gateway":
            return "gateway.service"
        index = next((i for i, s in enumerate(self.services) if s.name == problem.service), None)
        if index is None:
            return "services"
        return f"services[{index}].{problem.setting}" if problem.setting else f"services[{index}]"

    def phase_key(self, service: str | None) -> str:
        """Where `service`'s phase comes from: its own `phases.<name>`, or the stack's `phase`. A
        phase set in the older list form is named by the service too, with where this file has it."""
        if service in self.phases:
            return f"phases.{service}"
        listed = next((i for i, s in enumerate(self.services) if s.name == service and s.phase), None)
        return "phase" if listed is None else f"phases.{service} (here services[{listed}].phase)"

    def describe(self, error: FleetError, by_phase: bool = False) -> str:
        """One line per problem, each under the config key the user changes to fix it: the service's
        phase key for a step problem, the graph key for a graph problem."""
        return "\n".join(
            f"config {PROJECT}:{self.phase_key(p.service) if by_phase else self.key_of(p)}: {p.text}"
            for p in error.problems
        )


def _calls_outside(services: list[ServiceConfig]) -> None:
    """A call from the mesh to a service outside it is a destination (migration/outside.py): it needs
    the port the service is called on, and a Job is never called."""
    outside = {s.name: s for s in services if s.outside}
    problems = []
    for s in services:
        for up in s.upstreams_names if not s.outside else ():
            o = outside.get(up)
            if o is None:
                continue
            if o.outside == "job":
                text = f"{up!r} is a job outside the mesh: nothing calls a Job; drop the upstream"
            elif "port" not in o.model_fields_set:
                text = f"{s.name!r} calls {up!r}, which is outside the mesh: give {up!r} the port it is called on"
            else:
                continue
            problems.append(Problem(s.name, text, "upstreams"))
    if problems:
        raise FleetError(problems)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _taken_cluster_ip(ip: ipaddress.IPv4Address, cidr: Cidr) -> str | None:
    """What already holds `ip` in a Service range, by the conventions EKS, kubeadm and kind follow."""
    taken = {
        cidr.network_address: "the network address",
        cidr[1]: "the first address, the `kubernetes` API Service's",
        cidr[10]: "the 10th address, the cluster DNS Service's (kube-dns)",
        cidr.broadcast_address: "the broadcast address",
    }
    return taken.get(ip)


# --- loading -------------------------------------------------------------------------------------

_KEYS = {field.alias or name: name for name, field in StackConfig.model_fields.items()}


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate raw config (camelCase keys without the project prefix) or raise ConfigError."""
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise ConfigError(config_errors.unknown_keys(raw, unknown, list(_KEYS), project=PROJECT))
    try:
        return StackConfig.model_validate(dict(raw))
    except ValidationError as e:
        raise ConfigError(config_errors.lines(e, StackConfig, project=PROJECT)) from None


def raw_config() -> dict[str, Any]:
    """This project's keys from the Pulumi config, with JSON objects and arrays decoded."""
    from pulumi.runtime.config import CONFIG, get_config_env

    return project_keys({**get_config_env(), **CONFIG.get()})


def project_keys(flat: Mapping[str, Any]) -> dict[str, Any]:
    """This project's keys of a flat `project:key` -> text config (as the CLI, the mock harness and
    the Automation API give it), with JSON objects and arrays decoded."""
    raw: dict[str, Any] = {}
    for full_key, value in flat.items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            continue
        raw[key] = value
        if isinstance(value, str) and value[:1] in "[{":
            try:
                raw[key] = json.loads(value)
            except ValueError:
                raise ConfigError(f"config {PROJECT}:{key}: not valid JSON: {value[:60]!r}") from None
    return raw


def load_config() -> StackConfig:
    """Read and validate the stack config once; called before any resource is registered."""
    return parse_config(raw_config())

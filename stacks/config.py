"""Typed stack config: every key, its default and its limits, read once by `load_config`.

Keys are camelCase in Pulumi config (`consul-mesh-migration:consul` = {"serverReplicas": 3}) and
snake_case here. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import versions
from .phases import Phase

PROJECT = "consul-mesh-migration"

Cidr = ipaddress.IPv4Network
_DNS_LABEL = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL)]


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
        if v not in LOG_RETENTION_DAYS:
            allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
            raise ValueError(f"must be a retention period CloudWatch Logs accepts, in days: {allowed}")
        return v

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


# What the nodes must hold (dev defaults, in the phase with the most pods, permissive), and why two
# t3.medium nodes do. Pod limit under the VPC CNI: ENIs x (IPv4 per ENI - 1) + 2; t3.medium and
# t3a.medium 3 x (6 - 1) + 2 = 17, t3.large 35. Requests are the charts' and add-ons' defaults.
#
#   on every node (DaemonSets)         pods   CPU    memory
#     aws-node, kube-proxy               2    125m      -
#     ebs-csi-node, consul-cni           2    105m   195Mi
#   once in the cluster
#     consul-server (x serverReplicas)   1    100m   200Mi
#     connect-injector, webhook-cert-
#       manager, sync-catalog            3    200m   300Mi
#     api-gateway                        1    100m   100Mi
#     LB controller x2 (no requests)     2      -       -
#     CoreDNS x2                         2    200m   140Mi
#     EBS CSI controller x2              2    120m   480Mi
#     demo: api-v1, api-v2, web-v1 (the
#       sidecars request nothing) + 1
#       pod a rollout adds               4    200m   128Mi
#     check Jobs to come (2 at once)     2    100m   128Mi
#   (the chart's install Jobs finish; completed pods count toward no limit)
#
# Two nodes: 17 + 2 x 4 = 25 pods of 2 x 17 = 34; requests 1.48 vCPU of 3.86 allocatable and
# 1.8 GiB of ~6.6 GiB. t3.medium fits with room for a third service; one node alone (18+ pods)
# does not, so keep two (a Spot node is replaced before it is drained). Three Consul servers need
# desiredSize 3 (one server per node). t3.large (35 pods, 8 GiB) costs twice as much for room the
# demo does not use.
ON_DEMAND_INSTANCE_TYPES = ("t3.medium",)
# Spot: several types of the same size (2 vCPU, 4 GiB, 17 pods), more capacity pools to draw from.
SPOT_INSTANCE_TYPES = ("t3.medium", "t3a.medium")


class ClusterConfig(_Model):
    """The EKS cluster (platform eks) or the existing cluster (platform kubernetes)."""

    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    # Unset: SPOT_INSTANCE_TYPES with capacity type SPOT (_default_instance_types), else these.
    instance_types: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[0-9a-z]+$")]] = Field(
        default_factory=lambda: list(ON_DEMAND_INSTANCE_TYPES), min_length=1
    )
    min_size: int = Field(default=2, ge=1, le=100)
    desired_size: int = Field(default=2, ge=1, le=100)
    max_size: int = Field(default=3, ge=1, le=100)
    admin_role_arns: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")]] = Field(
        default_factory=list
    )
    public_access_cidrs: list[Cidr] = Field(default_factory=lambda: [Cidr("0.0.0.0/0")], min_length=1)
    log_types: list[LogType] = Field(default_factory=lambda: ["api", "audit", "authenticator"])
    service_cidr: Cidr = Cidr("172.20.0.0/16")
    protect: bool = True
    kubeconfig: str | None = None
    context: str | None = None

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


class ConsulConfig(_Model):
    datacenter: DnsLabel = "dc1"
    server_replicas: int = Field(default=1, ge=1, le=7)
    dns_cluster_ip: ipaddress.IPv4Address = ipaddress.IPv4Address("172.20.0.53")
    ui: UiConfig = Field(default_factory=lambda: UiConfig())
    mesh_gateways: bool = False
    peering: bool = False
    demo_prometheus: bool = False

    @field_validator("server_replicas")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (1, 3, 5 or 7) so the Raft quorum survives a failure")
        return v


class GatewayConfig(_Model):
    scheme: Literal["internet-facing", "internal"] = "internet-facing"
    allowed_cidrs: list[Cidr] = Field(default_factory=lambda: [Cidr("0.0.0.0/0")], min_length=1)
    service: DnsLabel = "web"


class ServiceConfig(_Model):
    """One demo service. `migrates`: starts outside the mesh (v1) and moves in (v2)."""

    name: DnsLabel
    namespace: DnsLabel | None = None
    port: int = Field(default=9091, ge=1024, le=65535)
    migrates: bool = False
    upstreams: list[DnsLabel] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=1, le=10)

    @property
    def ns(self) -> str:
        return self.namespace or self.name


def _default_services() -> list[ServiceConfig]:
    return [ServiceConfig(name="api", migrates=True), ServiceConfig(name="web", upstreams=["api"])]


_SEMVER = r"^\d+\.\d+\.\d+$"
_IMAGE = r"^[a-z0-9][\w.\-/]*:[\w][\w.\-]*$"
_ADDON = r"^v\d+\.\d+\.\d+-eksbuild\.\d+$"
_K8S_MINOR = r"^1\.\d{2}$"


class VersionsConfig(_Model):
    kubernetes: Annotated[str, Field(pattern=_K8S_MINOR)] = versions.KUBERNETES
    ebs_csi_addon: Annotated[str, Field(pattern=_ADDON)] = versions.EBS_CSI_ADDON
    coredns_addon: Annotated[str, Field(pattern=_ADDON)] = versions.COREDNS_ADDON
    kube_proxy_addon: Annotated[str, Field(pattern=_ADDON)] = versions.KUBE_PROXY_ADDON
    vpc_cni_addon: Annotated[str, Field(pattern=_ADDON)] = versions.VPC_CNI_ADDON
    lb_controller_chart: Annotated[str, Field(pattern=_SEMVER)] = versions.LB_CONTROLLER_CHART
    consul_chart: Annotated[str, Field(pattern=_SEMVER)] = versions.CONSUL_CHART
    consul_image: Annotated[str, Field(pattern=_IMAGE)] = versions.CONSUL_IMAGE
    consul_k8s_image: Annotated[str, Field(pattern=_IMAGE, alias="consulK8sImage")] = versions.CONSUL_K8S_IMAGE
    consul_dataplane_image: Annotated[str, Field(pattern=_IMAGE)] = versions.CONSUL_DATAPLANE_IMAGE
    fake_service_image: Annotated[str, Field(pattern=_IMAGE)] = versions.FAKE_SERVICE_IMAGE

    @field_validator("consul_image", "consul_k8s_image", "consul_dataplane_image", "fake_service_image")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.endswith(":latest"):
            raise ValueError("the tag 'latest' is not a pin; name a released version")
        return v


class StackConfig(_Model):
    phase: Phase = Phase.DISCOVERY
    platform: Literal["eks", "kubernetes"] = "eks"
    allow_phase_jump: bool = False
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig())
    cluster: ClusterConfig = Field(default_factory=lambda: ClusterConfig())
    consul: ConsulConfig = Field(default_factory=lambda: ConsulConfig())
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())
    services: list[ServiceConfig] = Field(default_factory=_default_services, min_length=1)
    versions: VersionsConfig = Field(default_factory=lambda: VersionsConfig())

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"services: names must be unique; repeated: {', '.join(dupes)}")
        for i, s in enumerate(self.services):
            for up in s.upstreams:
                if up not in names or up == s.name:
                    raise ValueError(
                        f"services[{i}].upstreams: {up!r} is not another service; allowed: {_others(names, s.name)}"
                    )
        for i, s in enumerate(self.services):
            for up in s.upstreams:
                callee = self.service(up)
                # A legacy v1 runs outside the mesh; a service in the mesh from the start is strict mTLS.
                if s.migrates and not callee.migrates:
                    raise ValueError(
                        f"services[{i}]: {s.name!r} migrates, so its v1 runs outside the mesh and cannot call "
                        f"{up!r}, which is in the mesh from the start; make {up!r} migrate too, or drop the upstream"
                    )
                # Consul takes one ServiceIntentions per destination; the gateway's service has the gateway's.
                if up == self.gateway.service:
                    raise ValueError(
                        f"services[{i}].upstreams: {up!r} is the gateway's service and its intentions belong to "
                        "the gateway; expose another service (gateway.service) or drop the upstream"
                    )
        if self.gateway.service not in names:
            raise ValueError(f"gateway.service {self.gateway.service!r} is not a service; allowed: {', '.join(names)}")
        if self.consul.dns_cluster_ip not in self.cluster.service_cidr:
            raise ValueError(
                f"consul.dnsClusterIp {self.consul.dns_cluster_ip} is outside "
                f"cluster.serviceCidr {self.cluster.service_cidr}"
            )
        if self.platform == "eks":
            if self.cluster.service_cidr.overlaps(self.network.cidr):
                raise ValueError(
                    f"cluster.serviceCidr {self.cluster.service_cidr} overlaps network.cidr {self.network.cidr}"
                )
            if self.consul.server_replicas > self.cluster.desired_size:
                raise ValueError(
                    f"consul.serverReplicas {self.consul.server_replicas} needs as many nodes (one server per "
                    f"node); cluster.desiredSize is {self.cluster.desired_size}"
                )
        return self

    def service(self, name: str) -> ServiceConfig:
        return next(s for s in self.services if s.name == name)


def _others(names: list[str], own: str) -> str:
    return ", ".join(n for n in names if n != own) or "(none)"


# --- loading -------------------------------------------------------------------------------------

_KEYS = {field.alias or name: name for name, field in StackConfig.model_fields.items()}


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate raw config (camelCase keys without the project prefix) or raise ConfigError."""
    unknown = [k for k in raw if k not in _KEYS]
    if unknown:
        raise ConfigError("\n".join(_unknown_key(k, list(_KEYS), "") for k in unknown))
    try:
        return StackConfig.model_validate(dict(raw))
    except ValidationError as e:
        raise ConfigError("\n".join(_describe(err, raw) for err in e.errors())) from None


def raw_config() -> dict[str, Any]:
    """This project's keys from the Pulumi config, with JSON objects and arrays decoded."""
    from pulumi.runtime.config import CONFIG, get_config_env

    merged = {**get_config_env(), **CONFIG.get()}
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
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


def _unknown_key(key: str, allowed: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"config {PROJECT}:{prefix}{key}: unknown key{hint}; allowed: {', '.join(sorted(allowed))}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the last element of `loc` (None for a list or a scalar)."""
    model: Any = StackConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        model = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(err: Any, raw: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    # A model validator reports on its whole object; its message names the keys and values itself.
    if err["type"] == "value_error" and isinstance(err.get("input"), dict):
        where = f"{PROJECT}:{_dotted(loc)}" if loc else PROJECT
        return f"config {where}: {_msg(err)}"
    key = _dotted(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        allowed = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        parent = _dotted(loc[:-1])
        return _unknown_key(str(loc[-1]), allowed, f"{parent}." if parent else "")
    if err["type"] == "model_type":
        model = _model_at((*loc, ""))
        keys = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())) if model else ""
        return f"config {PROJECT}:{key}: got {err.get('input')!r}; must be an object with keys among: {keys}"
    value = err.get("input")
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    text = f"config {PROJECT}:{key}: got {shown}; {_msg(err)}"
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    if choices and isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return text


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_PATTERN_NAMES = {
    _SEMVER: "a release version such as 1.2.3",
    _IMAGE: "an image with a pinned tag, such as repo/name:1.2.3",
    _ADDON: "an EKS add-on build such as v1.2.3-eksbuild.1",
    _K8S_MINOR: "a Kubernetes minor version such as 1.35",
    _DNS_LABEL: "a DNS label: lowercase letters, digits and '-'",
}


def _msg(err: Any) -> str:
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    expected = (err.get("ctx") or {}).get("expected")
    if expected and err["type"] in ("literal_error", "enum"):
        return f"allowed: {expected}"
    if err["type"] == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        return f"must be {_PATTERN_NAMES.get(pattern, 'of the form ' + pattern)}"
    return msg[0].lower() + msg[1:] if msg else msg

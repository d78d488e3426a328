"""The consul-k8s Helm chart values this project sets, as a typed model of the chart's own tree.

Plain data, no Pulumi imports. `chart_values(settings)` decides every value from `ConsulSettings`;
`ConsulValues.to_helm()` writes the chart's camelCase tree with unset (None) keys left out, so the
chart default applies. Field aliases are the chart's exact key names (imageK8S, manageSystemACLs,
toK8S, clusterIP, ...): every key written must exist in the chart's values.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from migration.drain import CATALOG_WRITE_INTERVAL_S

from .annotations import LB_SCHEME, LB_SOURCE_RANGES, LB_TARGET_TYPE, LB_TYPE

if TYPE_CHECKING:  # a type only: these values stay plain data, with no Pulumi import
    from .target import Platform

UiExposure = Literal["clusterIP", "internal", "public"]
Scheme = Literal["internet-facing", "internal"]

# The chart names everything after global.name: consul-server, consul-ui, consul-dns, ...
FULLNAME = "consul"
# Written by the chart's server-acl-init job when global.acls.bootstrapToken is unset.
BOOTSTRAP_TOKEN_SECRET = f"{FULLNAME}-bootstrap-acl-token"
UI_SERVICE = f"{FULLNAME}-ui"
# The chart's terminating gateway (its default name in values.yaml terminatingGateways.gateways): the
# Consul service it registers and the name of the TerminatingGateway entry that links services to it.
TERMINATING_GATEWAY = "terminating-gateway"
# The CA the chart's tls-init Job writes (key tls.crt) when TLS is on and no CA is given.
CA_SECRET = f"{FULLNAME}-ca-cert"

# What the gateway controller copies from a Gateway to the Service it creates for it. A key the
# Gateway does not carry is simply not copied, so the list does not depend on the gateway config.
GATEWAY_COPIED_ANNOTATIONS = (LB_TYPE, LB_TARGET_TYPE, LB_SCHEME, LB_SOURCE_RANGES)

# The chart's demo Prometheus Service (templates/prometheus.yaml), in the release's namespace.
DEMO_PROMETHEUS_URL = "http://prometheus-server"
# Two connect injectors: the mutating webhook every meshed pod passes on creation fails closed, so
# while no injector runs no pod can be created in an injected namespace. Two, on different nodes where
# there are two, with a budget that lets a drain evict one at a time.
INJECTOR_REPLICAS = 2
# Two API gateway pods (the gateway class's instances), under a budget of one eviction at a time.
GATEWAY_REPLICAS = 2
GATEWAY_MAX_REPLICAS = 8  # the GatewayClassConfig CRD's default ceiling; the chart's own default is 1
# Servers and injectors are scheduled before, and may preempt, the workloads: without a server there is
# no Consul, and without an injector no meshed pod can start. Below the system-* classes (2e9 and up).
PRIORITY_CLASS = "consul-control-plane"
PRIORITY = 1_000_000
# EKS labels every managed node with its capacity type (EKS User Guide, managed-node-groups).
ON_DEMAND_NODES = {"eks.amazonaws.com/capacityType": "ON_DEMAND"}

# consul-k8s install docs, "Enable the Consul CNI plugin": the reference configuration, which is
# where the AWS VPC CNI (and kind's kindnet) keep their binaries and chained config.
CNI_BIN_DIR = "/opt/cni/bin"
CNI_NET_DIR = "/etc/cni/net.d"


def nlb_annotations(scheme: Scheme) -> dict[str, str]:
    """An NLB from the AWS Load Balancer Controller, targets the pod IPs (no node hop)."""
    return {LB_TYPE: "external", LB_TARGET_TYPE: "ip", LB_SCHEME: scheme}


@dataclass(frozen=True)
class ExternalSettings:
    """consul.mode external: the servers to join and the Secrets (in Consul's namespace) to read."""

    host: str
    https_port: int
    grpc_port: int
    tls_server_name: str | None
    ca_secret: tuple[str, str]  # (secretName, secretKey) of the servers' CA certificate
    token_secret: tuple[str, str]  # (secretName, secretKey) of a token with acl:write
    auth_method_host: str | None  # the Kubernetes API as the servers reach it


@dataclass(frozen=True)
class ConsulSettings:
    """Everything the chart values depend on, in the project's terms."""

    platform: Platform
    datacenter: str
    server_replicas: int
    dns_cluster_ip: str
    image: str
    image_k8s: str
    image_dataplane: str
    sync_namespaces: list[str]  # Kubernetes namespaces whose Services are registered in Consul
    ui_exposure: UiExposure = "clusterIP"
    ui_allowed_cidrs: list[str] = field(default_factory=list)
    mesh_gateways: bool = False
    peering: bool = False
    demo_prometheus: bool = False
    priority_class: str | None = PRIORITY_CLASS  # of the servers and the injectors; components/consul.py makes it
    external: ExternalSettings | None = None  # None: the chart runs its own servers
    terminating_gateway: str | None = None  # the chart's terminating gateway for destinations, if any


class _Values(BaseModel):
    # Built by field name; written under the chart's key (camelCase, or the explicit alias).
    model_config = ConfigDict(alias_generator=AliasGenerator(serialization_alias=to_camel), frozen=True, extra="forbid")


# --- global ---------------------------------------------------------------------------------------


class SecretRef(_Values):
    secret_name: str
    secret_key: str


class Tls(_Values):
    enabled: bool
    enable_auto_encrypt: bool | None = None  # for the chart's own servers and client agents only
    verify: bool
    https_only: bool
    ca_cert: SecretRef | None = None  # None: the CA the chart's tls-init job makes


class Acls(_Values):
    manage_system_acls: bool = Field(serialization_alias="manageSystemACLs")
    bootstrap_token: SecretRef | None = None  # None: the chart bootstraps ACLs and writes the token


class GossipEncryption(_Values):
    auto_generate: bool


class Metrics(_Values):
    enabled: bool
    enable_agent_metrics: bool
    enable_gateway_metrics: bool


class Toggle(_Values):
    enabled: bool


class Global(_Values):
    name: str
    datacenter: str
    image: str
    image_k8s: str = Field(serialization_alias="imageK8S")
    image_consul_dataplane: str
    tls: Tls
    acls: Acls
    gossip_encryption: GossipEncryption
    metrics: Metrics
    peering: Toggle


# --- components -----------------------------------------------------------------------------------


class Server(_Values):
    enabled: bool | None = None  # None: the chart's default (on)
    replicas: int | None = None  # storageClass stays unset: the servers' volumes use the cluster's default class
    disruption_budget: Toggle | None = None
    priority_class_name: str | None = None
    node_selector: str | None = None  # YAML in a string


class DisruptionBudget(_Values):
    enabled: bool
    max_unavailable: int | None = None


class ExternalServers(_Values):
    enabled: bool
    hosts: list[str]
    https_port: int
    grpc_port: int
    tls_server_name: str | None = None
    k8s_auth_method_host: str | None = Field(default=None, serialization_alias="k8sAuthMethodHost")


class TerminatingGatewayValues(_Values):
    name: str


class TerminatingGateways(_Values):
    enabled: bool
    gateways: list[TerminatingGatewayValues]


class Cni(_Values):
    enabled: bool
    cni_bin_dir: str
    cni_net_dir: str
    multus: bool


class TransparentProxy(_Values):
    default_enabled: bool


class CopyAnnotationsService(_Values):
    annotations: str  # the chart wants a YAML list in a string: "- key\n- key\n"


class CopyAnnotations(_Values):
    service: CopyAnnotationsService


class GatewayDeployment(_Values):
    # The gateway controller gives a Gateway's Deployment its current replicas, else defaultInstances,
    # clamped to [minInstances, maxInstances] (api-gateway/gatekeeper/deployment.go deploymentReplicas):
    # minInstances is what raises a gateway deployed with one.
    default_instances: int
    min_instances: int
    max_instances: int


class ManagedGatewayClass(_Values):
    service_type: str
    copy_annotations: CopyAnnotations
    deployment: GatewayDeployment | None = None


class ApiGateway(_Values):
    manage_external_crds: bool = Field(serialization_alias="manageExternalCRDs")
    managed_gateway_class: ManagedGatewayClass


class ConnectInject(_Values):
    enabled: bool
    replicas: int
    disruption_budget: DisruptionBudget
    priority_class_name: str | None = None
    affinity: str | None = None  # YAML in a string, through the chart's tpl
    transparent_proxy: TransparentProxy
    cni: Cni
    api_gateway: ApiGateway


class SyncCatalog(_Values):
    enabled: bool
    to_consul: bool
    to_k8s: bool = Field(serialization_alias="toK8S")
    k8s_allow_namespaces: list[str] = Field(serialization_alias="k8sAllowNamespaces")
    k8s_deny_namespaces: list[str] = Field(serialization_alias="k8sDenyNamespaces")
    add_k8s_namespace_suffix: bool = Field(serialization_alias="addK8SNamespaceSuffix")
    default: bool  # a Service without consul.hashicorp.com/service-sync: synced or not (-k8s-default-sync)
    consul_write_interval: str  # a Go duration; the chart's -consul-write-interval flag


class Dns(_Values):
    enabled: bool
    enable_redirection: bool
    cluster_ip: str = Field(serialization_alias="clusterIP")
    proxy: Toggle | None = None


class UiService(_Values):
    type: Literal["ClusterIP", "LoadBalancer"]
    annotations: str | None = None  # the chart wants YAML in a string
    additional_spec: str | None = None  # YAML in a string, merged into the Service spec


class UiMetrics(_Values):
    enabled: bool
    provider: Literal["prometheus"] | None = None
    base_url: str | None = Field(default=None, serialization_alias="baseURL")


class Ui(_Values):
    enabled: bool
    service: UiService | None = None
    metrics: UiMetrics | None = None


class MeshGatewayService(_Values):
    annotations: str | None = None


class MeshGateway(_Values):
    enabled: bool
    service: MeshGatewayService | None = None


class ConsulValues(_Values):
    global_: Global = Field(serialization_alias="global")
    server: Server
    connect_inject: ConnectInject
    sync_catalog: SyncCatalog
    dns: Dns
    ui: Ui
    mesh_gateway: MeshGateway
    prometheus: Toggle
    external_servers: ExternalServers | None = None
    terminating_gateways: TerminatingGateways | None = None

    def to_helm(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


# --- deciding the values --------------------------------------------------------------------------

# Never synced into the catalog: Consul's own Services and the cluster's system Services.
SYNC_DENIED_NAMESPACES = ["consul", "kube-system", "kube-public"]


def _yaml_map(values: dict[str, str]) -> str:
    """A flat string map as YAML text; every value quoted so "true" or "1" stay strings."""
    return "".join(f'{k}: "{v}"\n' for k, v in values.items())


def _yaml_list(items: list[str] | tuple[str, ...]) -> str:
    return "".join(f"- {i}\n" for i in items)


def _ui_service(s: ConsulSettings) -> UiService:
    if s.ui_exposure == "clusterIP":
        return UiService(type="ClusterIP")
    annotations: dict[str, str] = {}
    if s.platform == "eks":  # elsewhere the cluster's own load balancer implementation decides
        annotations = nlb_annotations("internal" if s.ui_exposure == "internal" else "internet-facing")
    spec = f"loadBalancerSourceRanges:\n{_yaml_list(s.ui_allowed_cidrs)}" if s.ui_allowed_cidrs else None
    return UiService(type="LoadBalancer", annotations=_yaml_map(annotations) or None, additional_spec=spec)


def _ui_metrics(s: ConsulSettings) -> UiMetrics:
    """Traffic graphs in the UI read Prometheus, which only the chart's demo Prometheus provides here.

    Left to the chart, ui.metrics follows global.metrics (on) and points the UI at
    http://prometheus-server whether that Service exists or not.
    """
    if not s.demo_prometheus:
        return UiMetrics(enabled=False)
    return UiMetrics(enabled=True, provider="prometheus", base_url=DEMO_PROMETHEUS_URL)


def _server_disruption_budget(replicas: int) -> Toggle:
    """The chart's PodDisruptionBudget for the servers only where it lets a drain proceed.

    For one server the chart writes maxUnavailable 0 whatever server.disruptionBudget.maxUnavailable
    says (templates/_helpers.tpl consul.server.pdb.maxUnavailable), so no eviction is ever allowed
    and a node drain, such as an EKS managed node group update, fails (PodEvictionFailure). One
    server gets no budget: a node rotation restarts it on another node, Consul's API is down until it
    is back, and running sidecars keep their last configuration meanwhile. Three or more servers keep
    the chart's budget (maxUnavailable 1): one at a time, so the Raft quorum holds.
    """
    return Toggle(enabled=replicas > 1)


# Prefer nodes without another injector (the chart sets no affinity for it): both on one node would
# both go when it does.
INJECTOR_ANTI_AFFINITY = """podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            app: {{ template "consul.name" . }}
            release: "{{ .Release.Name }}"
            component: connect-injector
        topologyKey: kubernetes.io/hostname
"""


def _injector_disruption_budget(replicas: int) -> DisruptionBudget:
    """One eviction at a time. Left unset the chart computes 0 for two replicas as for one
    (templates/_helpers.tpl consul.pdb.connectInject.maxUnavailable: replicas/2 - 1), and every node
    drain would fail (PodEvictionFailure); a single injector gets no budget at all."""
    if replicas == 1:
        return DisruptionBudget(enabled=False)
    return DisruptionBudget(enabled=True, max_unavailable=1)


def _mesh_gateway(s: ConsulSettings) -> MeshGateway:
    if not s.mesh_gateways:
        return MeshGateway(enabled=False)
    # Internal: peers reach it across VPC peering or a transit gateway, never from the internet.
    annotations = _yaml_map(nlb_annotations("internal")) if s.platform == "eks" else None
    return MeshGateway(enabled=True, service=MeshGatewayService(annotations=annotations))


def _tls(s: ConsulSettings) -> Tls:
    if s.external is None:
        # Upstream's secure defaults: agents get certificates through auto-encrypt, and verify
        # (verify_incoming, verify_outgoing, verify_server_hostname) on; HTTPS only.
        return Tls(enabled=True, enable_auto_encrypt=True, verify=True, https_only=True)
    # No servers or client agents of the chart's: auto-encrypt would serve neither (the injector uses
    # it only for pods of a client agent: consul-k8s v2.0.3 endpoints/consul_client_health_checks.go).
    # The CA is the servers' own, from the user's Secret: without servers the chart runs no tls-init.
    return Tls(
        enabled=True,
        verify=True,
        https_only=True,
        ca_cert=SecretRef(secret_name=s.external.ca_secret[0], secret_key=s.external.ca_secret[1]),
    )


def _acls(s: ConsulSettings) -> Acls:
    if s.external is None:
        return Acls(manage_system_acls=True)
    # Servers whose ACLs are bootstrapped already: server-acl-init creates the components' policies
    # and tokens with this token instead of bootstrapping (values.yaml global.acls.bootstrapToken).
    name, key = s.external.token_secret
    return Acls(manage_system_acls=True, bootstrap_token=SecretRef(secret_name=name, secret_key=key))


def _servers(s: ConsulSettings) -> tuple[Server, ExternalServers | None]:
    if s.external is None:
        server = Server(
            replicas=s.server_replicas,
            disruption_budget=_server_disruption_budget(s.server_replicas),
            priority_class_name=s.priority_class,
            # Never on Spot: an interruption takes a server, and its zonal volume, with it.
            node_selector=_yaml_map(ON_DEMAND_NODES) if s.platform == "eks" else None,
        )
        return server, None
    e = s.external
    return Server(enabled=False), ExternalServers(
        enabled=True,
        hosts=[e.host],
        https_port=e.https_port,
        grpc_port=e.grpc_port,
        tls_server_name=e.tls_server_name,
        k8s_auth_method_host=e.auth_method_host,
    )


def _dns(s: ConsulSettings) -> Dns:
    """Consul DNS on its fixed ClusterIP. The chart's `consul-dns` Service selects the pods labelled
    hasDNS, which only its servers and client agents carry (templates/dns-service.yaml): with external
    servers it would have no endpoints, so its DNS proxy (a consul-dataplane against the servers)
    takes the address instead (templates/dns-proxy-service.yaml)."""
    proxy = Toggle(enabled=True) if s.external is not None else None
    return Dns(enabled=True, enable_redirection=True, cluster_ip=s.dns_cluster_ip, proxy=proxy)


def _terminating_gateways(s: ConsulSettings) -> TerminatingGateways | None:
    """The chart's terminating gateway, only while destinations need one. Its TerminatingGateway
    entry then works at all: consul-k8s v2.0.3's controller reads the ConfigMap `helm-values` on every
    reconcile (controllers/configentries/terminatinggateway_controller.go, Reconcile), which the chart
    renders only with terminatingGateways.enabled (templates/consul-helm-values-configmap.yaml)."""
    if s.terminating_gateway is None:
        return None
    return TerminatingGateways(enabled=True, gateways=[TerminatingGatewayValues(name=s.terminating_gateway)])


def chart_values(s: ConsulSettings) -> ConsulValues:
    server, external_servers = _servers(s)
    return ConsulValues(
        global_=Global(
            name=FULLNAME,
            datacenter=s.datacenter,
            image=s.image,
            image_k8s=s.image_k8s,
            image_consul_dataplane=s.image_dataplane,
            tls=_tls(s),
            acls=_acls(s),
            # Gossip is between agents; with external servers the chart runs none.
            gossip_encryption=GossipEncryption(auto_generate=s.external is None),
            metrics=Metrics(enabled=True, enable_agent_metrics=True, enable_gateway_metrics=True),
            peering=Toggle(enabled=s.peering),
        ),
        server=server,
        external_servers=external_servers,
        connect_inject=ConnectInject(
            enabled=True,
            replicas=INJECTOR_REPLICAS,
            disruption_budget=_injector_disruption_budget(INJECTOR_REPLICAS),
            priority_class_name=s.priority_class,
            affinity=INJECTOR_ANTI_AFFINITY,
            transparent_proxy=TransparentProxy(default_enabled=True),
            # Traffic redirection by the CNI plugin: application pods need no CAP_NET_ADMIN init container.
            cni=Cni(enabled=True, cni_bin_dir=CNI_BIN_DIR, cni_net_dir=CNI_NET_DIR, multus=False),
            api_gateway=ApiGateway(
                manage_external_crds=True,
                managed_gateway_class=ManagedGatewayClass(
                    service_type="LoadBalancer",
                    copy_annotations=CopyAnnotations(
                        service=CopyAnnotationsService(annotations=_yaml_list(GATEWAY_COPIED_ANNOTATIONS))
                    ),
                    deployment=GatewayDeployment(
                        default_instances=GATEWAY_REPLICAS,
                        min_instances=GATEWAY_REPLICAS,
                        max_instances=GATEWAY_MAX_REPLICAS,
                    ),
                ),
            ),
        ),
        # Kubernetes -> Consul only, under the Kubernetes name: the Service `api` is api.service.consul.
        sync_catalog=SyncCatalog(
            enabled=True,
            to_consul=True,
            to_k8s=False,
            k8s_allow_namespaces=sorted(set(s.sync_namespaces)),
            k8s_deny_namespaces=SYNC_DENIED_NAMESPACES,
            add_k8s_namespace_suffix=False,
            # Only a Service that says service-sync "true" (the fleet's, while it has pods outside the
            # mesh) is registered, so a team's other Services in the same namespaces stay out of Consul,
            # whose catalog may be the team's own (consul-k8s v2.0.3 catalog/to-consul/resource.go
            # shouldSync: no annotation -> the default).
            default=False,
            # Catalog sync writes to Consul only this often, so a deleted legacy version stays in
            # <name>.service.consul until the next write (migration/drain.py sizes preStop from it).
            consul_write_interval=f"{CATALOG_WRITE_INTERVAL_S}s",
        ),
        dns=_dns(s),
        # The UI is served by the servers: with external servers, theirs (the chart renders no UI Service).
        ui=Ui(enabled=True, service=_ui_service(s), metrics=_ui_metrics(s))
        if s.external is None
        else Ui(enabled=False),
        mesh_gateway=_mesh_gateway(s),
        prometheus=Toggle(enabled=s.demo_prometheus),
        terminating_gateways=_terminating_gateways(s),
    )

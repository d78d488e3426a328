"""Consul on the cluster: one Helm release with the seed's features on, opt-ins off unless asked for."""

from __future__ import annotations

from typing import Any

import pytest

from components.annotations import LB_SCHEME, LB_TARGET_TYPE, LB_TYPE
from components.consul_values import GATEWAY_COPIED_ANNOTATIONS, ConsulSettings, chart_values
from migration.phases import PHASE_NAMES
from program.versions import CONSUL_CHART, CONSUL_DATAPLANE_IMAGE, CONSUL_IMAGE, CONSUL_K8S_IMAGE

LOCAL = {"stack": "local"}  # platform kubernetes (kind)
CRD_GROUPS = ("consul.hashicorp.com", "gateway.networking.k8s.io")
OPT_INS = {
    "cluster": {"desiredSize": 3},  # one Consul server per node
    "consul": {"serverReplicas": 3, "meshGateways": True, "peering": True, "demoPrometheus": True},
}


def release(run) -> Any:
    return run.one("kubernetes:helm.sh/v3:Release", "consul-release")


def values(run) -> dict[str, Any]:
    return release(run).inputs["values"]


def test_a_real_helm_release_named_consul_of_the_pinned_chart_in_namespace_consul(default_run):
    rel = release(default_run)
    assert rel.inputs["name"] == "consul"  # not autonamed: helm and consul-k8s status find it
    assert rel.inputs["chart"] == "consul"
    assert rel.inputs["repositoryOpts"]["repo"] == "https://helm.releases.hashicorp.com"
    assert rel.inputs["version"] == CONSUL_CHART
    assert rel.inputs["namespace"] == "consul"
    ns = default_run.one("kubernetes:core/v1:Namespace", "consul-namespace")
    assert ns.k8s_name == "consul"
    g = values(default_run)["global"]
    assert (g["image"], g["imageK8S"], g["imageConsulDataplane"]) == (
        CONSUL_IMAGE,
        CONSUL_K8S_IMAGE,
        CONSUL_DATAPLANE_IMAGE,
    )
    assert g["name"] == "consul"


def test_security_features_are_on_as_upstream_recommends(default_run):
    g = values(default_run)["global"]
    assert g["tls"] == {"enabled": True, "enableAutoEncrypt": True, "verify": True, "httpsOnly": True}
    assert g["acls"] == {"manageSystemACLs": True}
    assert g["gossipEncryption"] == {"autoGenerate": True}


def test_mesh_injection_with_transparent_proxy_and_the_cni_plugin(default_run):
    ci = values(default_run)["connectInject"]
    assert ci["enabled"] is True
    assert ci["transparentProxy"] == {"defaultEnabled": True}
    assert ci["cni"] == {"enabled": True, "cniBinDir": "/opt/cni/bin", "cniNetDir": "/etc/cni/net.d", "multus": False}


def test_the_api_gateway_class_makes_a_load_balancer_that_carries_the_gateways_nlb_annotations(default_run):
    gw = values(default_run)["connectInject"]["apiGateway"]
    assert gw["manageExternalCRDs"] is True
    cls = gw["managedGatewayClass"]
    assert cls["serviceType"] == "LoadBalancer"
    copied = cls["copyAnnotations"]["service"]["annotations"].splitlines()
    assert copied == [f"- {key}" for key in GATEWAY_COPIED_ANNOTATIONS]
    assert {LB_TYPE, LB_TARGET_TYPE, LB_SCHEME} <= set(GATEWAY_COPIED_ANNOTATIONS)


def test_catalog_sync_registers_kubernetes_services_under_their_own_names(default_run):
    sync = values(default_run)["syncCatalog"]
    assert sync["enabled"] is True
    assert sync["toConsul"] is True and sync["toK8S"] is False
    assert sync["addK8SNamespaceSuffix"] is False  # Service `api` is api.service.consul, not api-api
    assert {"consul", "kube-system"} <= set(sync["k8sDenyNamespaces"])
    assert sync["k8sAllowNamespaces"] == ["api", "web"]  # only the migration's namespaces


def test_metrics_dns_servers_and_ui(default_run):
    v = values(default_run)
    assert v["global"]["metrics"] == {"enabled": True, "enableAgentMetrics": True, "enableGatewayMetrics": True}
    assert v["dns"]["enabled"] is True and v["dns"]["enableRedirection"] is True
    assert v["server"]["replicas"] == 1
    assert "storageClass" not in v["server"]  # the cluster's default StorageClass
    assert v["ui"] == {"enabled": True, "service": {"type": "ClusterIP"}, "metrics": {"enabled": False}}


# --- chart-level decisions, on the values alone ---------------------------------------------------------


def helm_values(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "platform": "eks",
        "datacenter": "dc1",
        "server_replicas": 1,
        "dns_cluster_ip": "172.20.0.53",
        "image": CONSUL_IMAGE,
        "image_k8s": CONSUL_K8S_IMAGE,
        "image_dataplane": CONSUL_DATAPLANE_IMAGE,
        "sync_namespaces": ["api", "web"],
    }
    return chart_values(ConsulSettings(**{**settings, **overrides})).to_helm()


def test_a_single_server_has_no_disruption_budget_so_a_node_drain_can_evict_it():
    """With the chart's budget an EKS node group update fails on the server's node (PodEvictionFailure).

    consul-k8s v2.0.3 charts/consul/templates/_helpers.tpl consul.server.pdb.maxUnavailable writes
    maxUnavailable 0 for server.replicas 1, whatever server.disruptionBudget.maxUnavailable says
    (templates/server-disruptionbudget.yaml): the eviction API refuses every eviction and the drain
    never ends. Without one, a node rotation restarts the single server; Consul's API is down until it
    is back, and running sidecars keep their last configuration meanwhile.
    """
    assert helm_values(server_replicas=1)["server"]["disruptionBudget"] == {"enabled": False}


def test_three_servers_keep_the_charts_budget_of_one_eviction_at_a_time():
    """Left to the chart, maxUnavailable is 1 for three servers: a drain takes one server at a time and
    the Raft quorum (two of three) holds; no budget would let a drain take two and lose it."""
    server = helm_values(server_replicas=3)["server"]
    assert server["disruptionBudget"] == {"enabled": True}  # maxUnavailable left to the chart: 1


def test_two_connect_injectors_on_different_nodes_with_a_budget_of_one_eviction(default_run):
    """The injector's webhook fails closed: with one injector down no meshed pod can be created. Two,
    preferring different nodes (the chart sets no affinity), and maxUnavailable 1 written out: left
    unset, templates/_helpers.tpl consul.pdb.connectInject.maxUnavailable gives 2 replicas
    `sub (div 2 2) 1` = 0, and every node drain (an EKS node group update) would fail."""
    inject = values(default_run)["connectInject"]
    assert inject["replicas"] == 2
    assert inject["disruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    assert "podAntiAffinity" in inject["affinity"] and "component: connect-injector" in inject["affinity"]
    assert "topologyKey: kubernetes.io/hostname" in inject["affinity"]


def test_two_api_gateway_pods_raised_on_a_gateway_deployed_with_one(default_run):
    """The controller keeps a Deployment's current replicas, clamped to the class's [min, max]
    (api-gateway/gatekeeper/deployment.go deploymentReplicas): minInstances 2 raises a gateway that
    runs one; the chart's maxInstances 1 would clamp any count to 1."""
    deployment = values(default_run)["connectInject"]["apiGateway"]["managedGatewayClass"]["deployment"]
    assert deployment == {"defaultInstances": 2, "minInstances": 2, "maxInstances": 8}
    budget = default_run.one("kubernetes:policy/v1:PodDisruptionBudget", "gateway-budget").inputs
    assert budget["spec"]["maxUnavailable"] == 1
    # The labels the controller puts on the gateway's pods (api-gateway/common/labels.go LabelsForGateway),
    # without the creation-time one.
    assert budget["spec"]["selector"]["matchLabels"] == {
        "component": "api-gateway",
        "gateway.consul.hashicorp.com/name": "api-gateway",
        "gateway.consul.hashicorp.com/namespace": "consul",
    }
    assert budget["metadata"]["namespace"] == "consul"


def test_servers_and_injectors_run_ahead_of_the_workloads(default_run):
    priority_class = default_run.one("kubernetes:scheduling.k8s.io/v1:PriorityClass", "consul-priority")
    priority = priority_class.inputs
    assert priority["metadata"]["name"] == "consul-control-plane"
    assert 0 < priority["value"] < 2_000_000_000  # below system-cluster-critical, above every default pod (0)
    assert priority["globalDefault"] is False
    assert values(default_run)["server"]["priorityClassName"] == "consul-control-plane"
    assert values(default_run)["connectInject"]["priorityClassName"] == "consul-control-plane"
    assert default_run.depends_on(release(default_run), priority_class)


def test_servers_never_run_on_spot_nodes(program):
    """Every EKS managed node carries eks.amazonaws.com/capacityType (EKS User Guide,
    managed-node-groups); with SPOT nodes the on-demand ones are the servers' group (components/cluster.py)."""
    for config in ({}, {"cluster": {"capacityType": "SPOT"}}):
        server = values(program(config))["server"]
        assert server["nodeSelector"] == 'eks.amazonaws.com/capacityType: "ON_DEMAND"\n'
    assert "nodeSelector" not in values(program({}, stack="local"))["server"]  # kind's node has no such label


def test_the_ui_reads_metrics_only_from_the_demo_prometheus():
    """Left to the chart, ui.metrics follows global.metrics (on) and templates/server-config-configmap.yaml
    points the UI's metrics proxy at http://prometheus-server, a Service only prometheus.enabled creates
    (templates/prometheus.yaml): every service page's metrics call would fail to resolve it."""
    assert helm_values(demo_prometheus=False)["ui"]["metrics"] == {"enabled": False}
    assert helm_values(demo_prometheus=True)["ui"]["metrics"] == {
        "enabled": True,
        "provider": "prometheus",
        "baseURL": "http://prometheus-server",
    }
    assert helm_values(demo_prometheus=True)["prometheus"] == {"enabled": True}


def test_consul_dns_has_the_configured_fixed_cluster_ip(program):
    assert values(program({}))["dns"]["clusterIP"] == "172.20.0.53"
    assert values(program({}, **LOCAL))["dns"]["clusterIP"] == "10.96.0.53"  # inside kind's range


def test_mesh_gateways_peering_and_demo_prometheus_are_off_by_default(default_run):
    v = values(default_run)
    assert v["meshGateway"] == {"enabled": False}
    assert v["global"]["peering"] == {"enabled": False}
    assert v["prometheus"] == {"enabled": False}


def test_opt_ins_and_three_servers_by_config(program):
    run = program(OPT_INS)
    assert run.error is None, run.error
    v = values(run)
    assert v["server"]["replicas"] == 3
    assert v["global"]["peering"] == {"enabled": True}
    assert v["prometheus"] == {"enabled": True}
    assert v["meshGateway"]["enabled"] is True
    annotations = v["meshGateway"]["service"]["annotations"]
    assert f'{LB_TYPE}: "external"' in annotations and f'{LB_TARGET_TYPE}: "ip"' in annotations
    assert f'{LB_SCHEME}: "internal"' in annotations  # no internet-facing load balancer without an allow-list


def test_the_ui_is_reached_by_port_forward_by_default(default_run):
    assert default_run.outputs["consulUi"] == "kubectl -n consul port-forward svc/consul-ui 8501:443"


def test_an_internal_ui_gets_an_internal_nlb(program):
    run = program({"consul": {"ui": {"exposure": "internal"}}})
    assert run.error is None, run.error
    svc = values(run)["ui"]["service"]
    assert svc["type"] == "LoadBalancer"
    assert svc["annotations"].splitlines() == [
        f'{LB_TYPE}: "external"',
        f'{LB_TARGET_TYPE}: "ip"',
        f'{LB_SCHEME}: "internal"',
    ]
    assert "additionalSpec" not in svc
    assert run.outputs["consulUi"].startswith("https://")  # read from the Service the chart creates


def test_a_public_ui_is_internet_facing_and_only_for_the_allowed_cidrs(program):
    run = program({"consul": {"ui": {"exposure": "public", "allowedCidrs": ["203.0.113.0/24", "198.51.100.7/32"]}}})
    assert run.error is None, run.error
    svc = values(run)["ui"]["service"]
    assert f'{LB_SCHEME}: "internet-facing"' in svc["annotations"]
    assert svc["additionalSpec"] == "loadBalancerSourceRanges:\n- 203.0.113.0/24\n- 198.51.100.7/32\n"


def test_off_aws_a_load_balanced_ui_carries_no_aws_annotations(program):
    ui = {"exposure": "public", "allowedCidrs": ["203.0.113.0/24"]}
    run = program({"consul": {"dnsClusterIp": "10.96.0.53", "ui": ui}}, **LOCAL)
    assert run.error is None, run.error
    svc = values(run)["ui"]["service"]
    assert svc["type"] == "LoadBalancer" and "annotations" not in svc
    assert svc["additionalSpec"] == "loadBalancerSourceRanges:\n- 203.0.113.0/24\n"


def test_the_bootstrap_token_secret_is_named_never_exported(default_run):
    assert default_run.outputs["bootstrapTokenSecret"] == "consul/consul-bootstrap-acl-token"


def test_on_eks_the_release_waits_for_the_load_balancer_controller_and_the_default_storage_class(program):
    run = program({})
    assert run.error is None, run.error
    rel = release(run)
    controller = [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("chart", "").endswith("aws-load-balancer-controller")
    ]
    default_class = [
        r
        for r in run.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
        if (r.inputs.get("metadata") or {}).get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert len(controller) == 1 and len(default_class) == 1
    assert run.depends_on(rel, controller[0])
    assert run.depends_on(rel, default_class[0])


def test_the_consul_namespace_is_deleted_before_the_load_balancer_controller(program):
    """Its deletion waits for the gateway's Service, whose finalizer the controller runs to free the NLB."""
    run = program({})
    namespace = run.one("kubernetes:core/v1:Namespace", k8s_name="consul")
    controller = next(
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("chart", "").endswith("aws-load-balancer-controller")
    )
    assert run.depends_on(namespace, controller)


def test_every_consul_object_uses_the_explicit_provider(default_run):
    provider = default_run.one("pulumi:providers:kubernetes")
    consul = default_run.one("consul-mesh-migration:consul:Consul")
    mine = [r for r in default_run.resources if r.custom and consul in default_run.ancestors(r)]
    assert mine and all(r.provider.startswith(provider.urn + "::") for r in mine)


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_consul_and_gateway_api_object_waits_for_the_release_that_installs_its_crd(program, stack, phase):
    run = program({"phase": phase}, stack=stack)  # the same evaluations as the schema tests: cached
    assert run.error is None, run.error
    rel = release(run)
    crd_objects = [r for r in run.resources if r.type.split(":")[1].rsplit("/", 1)[0] in CRD_GROUPS]
    assert crd_objects
    assert [r.name for r in crd_objects if not run.depends_on(r, rel)] == []

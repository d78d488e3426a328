"""The API gateway: `api-gateway` in `consul`, a route to `web`, and the intentions that let it through."""

from __future__ import annotations

import json

from components.annotations import LB_SCHEME, LB_SOURCE_RANGES, LB_TARGET_TYPE, LB_TYPE

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
TIMEOUT = "kubernetes:consul.hashicorp.com/v1alpha1:RouteTimeoutFilter"
INTENTIONS = "kubernetes:consul.hashicorp.com/v1alpha1:ServiceIntentions"
LOCAL = {"stack": "local"}


def annotations_of(res) -> dict[str, str]:
    return res.inputs["metadata"].get("annotations") or {}


def test_a_gateway_api_gateway_in_consul_with_one_http_listener_for_the_service_namespaces(default_run):
    gateway = default_run.one(GATEWAY)
    assert (gateway.k8s_namespace, gateway.k8s_name) == ("consul", "api-gateway")
    spec = gateway.inputs["spec"]
    assert spec["gatewayClassName"] == "consul"
    [listener] = spec["listeners"]
    assert (listener["name"], listener["port"], listener["protocol"]) == ("http", 80, "HTTP")
    admitted = listener["allowedRoutes"]["namespaces"]
    assert admitted["from"] == "Selector"
    assert admitted["selector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["api", "web"]}
    ]


def test_the_route_sends_root_and_ui_to_the_web_service_through_the_gateway(default_run):
    route = default_run.one(ROUTE)
    assert (route.k8s_namespace, route.k8s_name) == ("web", "web")
    spec = route.inputs["spec"]
    assert spec["parentRefs"] == [{"name": "api-gateway", "namespace": "consul", "sectionName": "http"}]
    [rule] = spec["rules"]
    assert [m["path"] for m in rule["matches"]] == [
        {"type": "PathPrefix", "value": "/"},
        {"type": "PathPrefix", "value": "/ui"},
    ]
    assert rule["backendRefs"] == [{"name": "web", "port": 9091}]


def test_what_the_route_references_exists_and_nothing_else(default_run):
    route = default_run.one(ROUTE)
    [rule] = route.inputs["spec"]["rules"]
    [ref] = [f["extensionRef"] for f in rule["filters"]]
    timeout = default_run.one(TIMEOUT)
    assert ref == {"group": "consul.hashicorp.com", "kind": "RouteTimeoutFilter", "name": timeout.k8s_name}
    assert timeout.k8s_namespace == route.k8s_namespace  # an extensionRef is local to the route's namespace
    assert timeout.inputs["spec"] == {"requestTimeout": "30s", "idleTimeout": "60s"}
    assert default_run.depends_on(route, timeout)
    # Same-namespace backend, parentRef admitted by allowedRoutes: Gateway API needs no ReferenceGrant.
    assert not [r for r in default_run.resources if r.kind == "ReferenceGrant"]


def test_intentions_let_the_gateway_reach_web(default_run):
    intentions = default_run.one(INTENTIONS, k8s_name="web")
    assert intentions.k8s_namespace == "web"
    spec = intentions.inputs["spec"]
    assert spec["destination"] == {"name": "web"}
    assert [(s["name"], s["action"]) for s in spec["sources"]] == [("api-gateway", "allow")]


def test_the_service_namespaces_exist_before_objects_are_placed_in_them(default_run):
    namespaces = {r.k8s_name: r for r in default_run.of_type("kubernetes:core/v1:Namespace")}
    assert {"consul", "api", "web"} <= set(namespaces)
    for res in (default_run.one(ROUTE), default_run.one(TIMEOUT), default_run.one(INTENTIONS, k8s_name="web")):
        assert default_run.depends_on(res, namespaces["web"])


def test_api_versions_are_served_by_the_charts_crds(default_run):
    versions = {r.kind: r.inputs["apiVersion"] for r in default_run.resources if r.name.startswith("gateway-")}
    assert versions["Gateway"] == versions["HTTPRoute"] == "gateway.networking.k8s.io/v1"
    assert versions["RouteTimeoutFilter"] == versions["ServiceIntentions"] == "consul.hashicorp.com/v1alpha1"


def test_on_eks_the_gateway_asks_for_an_internet_facing_nlb_open_to_the_allowed_cidrs(program):
    """Without the type annotations the gateway's Service never gets an NLB on EKS.

    consul-k8s v2.0.3 api-gateway/gatekeeper/service.go Gatekeeper.service copies these annotations
    to the Service it makes (no loadBalancerClass; the LB controller's mutator is off), and
    aws-load-balancer-controller v3.5.0 pkg/service/service_utils.go IsServiceSupported claims a
    classless Service only with aws-load-balancer-type external and an nlb-target-type.
    """
    run = program({})
    assert run.error is None, run.error
    a = annotations_of(run.one(GATEWAY))
    assert a[LB_TYPE] == "external" and a[LB_TARGET_TYPE] == "ip"
    assert a[LB_SCHEME] == "internet-facing"
    assert a[LB_SOURCE_RANGES] == "0.0.0.0/0"
    # Created means programmed and addressed, so the Service read next has its hostname.
    assert json.loads(a["pulumi.com/waitFor"]) == ["condition=Programmed", "jsonpath={.status.addresses[0].value}"]


def test_scheme_and_allowed_cidrs_are_config(program):
    run = program({"gateway": {"scheme": "internal", "allowedCidrs": ["10.0.0.0/8", "192.0.2.0/24"]}})
    assert run.error is None, run.error
    a = annotations_of(run.one(GATEWAY))
    assert a[LB_SCHEME] == "internal"
    assert a[LB_SOURCE_RANGES] == "10.0.0.0/8,192.0.2.0/24"


def test_off_aws_the_gateway_carries_no_aws_annotations(program):
    a = annotations_of(program({}, **LOCAL).one(GATEWAY))
    assert a == {LB_SOURCE_RANGES: "0.0.0.0/0", "pulumi.com/waitFor": "condition=Programmed"}


def test_gateway_url_is_the_hostname_of_the_service_the_controller_creates(default_run):
    # program/offline.py reports <resource name>.elb.<region>.amazonaws.com for every Service read.
    assert default_run.outputs["gatewayUrl"] == "http://gateway-service.elb.us-west-2.amazonaws.com"


def test_every_gateway_object_waits_for_the_consul_release_and_uses_the_explicit_provider(default_run):
    consul_release = default_run.one("kubernetes:helm.sh/v3:Release", "consul-release")
    provider = default_run.one("pulumi:providers:kubernetes")
    for res in (
        default_run.one(GATEWAY),
        default_run.one(ROUTE),
        default_run.one(TIMEOUT),
        default_run.one(INTENTIONS, k8s_name="web"),
    ):
        assert default_run.depends_on(res, consul_release), res.name
        assert res.provider.startswith(provider.urn + "::"), res.name


def test_the_exposed_service_its_namespace_and_port_come_from_config(program):
    services = [
        {"name": "api", "migrates": True},
        {"name": "web", "upstreams": ["api"]},
        {"name": "shop", "namespace": "store", "port": 8080},
    ]
    run = program({"services": services, "gateway": {"service": "shop"}}, **LOCAL)
    assert run.error is None, run.error
    route = run.one(ROUTE)
    assert (route.k8s_namespace, route.k8s_name) == ("store", "shop")
    assert route.inputs["spec"]["rules"][0]["backendRefs"] == [{"name": "shop", "port": 8080}]
    intentions = run.one(INTENTIONS, k8s_name="shop")
    assert intentions.k8s_namespace == "store"
    assert intentions.inputs["spec"]["destination"] == {"name": "shop"}
    selector = run.one(GATEWAY).inputs["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]
    assert selector["matchExpressions"][0]["values"] == ["api", "store", "web"]

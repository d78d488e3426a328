"""What the cluster holds after `pulumi up` in each phase: issue 5's table, object by object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from migration.entries import ACCESS_LOG_FORMAT
from migration.phases import PHASE_NAMES

CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"

OPEN_MESH = {"allowEnablingPermissiveMutualTLS": True, "transparentProxy": {"meshDestinationsOnly": False}}
CLOSED_MESH = {"allowEnablingPermissiveMutualTLS": False, "transparentProxy": {"meshDestinationsOnly": True}}
STRICT = {"protocol": "http", "mutualTLSMode": "strict", "transparentProxy": {"dialedDirectly": True}}

# phase: (deployments, ServiceDefaults api spec, Mesh spec, upstream NAMEs a curl through the gateway shows)
TABLE: dict[str, tuple[set[str], dict[str, Any], dict[str, Any], list[str]]] = {
    # permissive before api-v2 exists (it changes nothing then), so a step back from permissive
    # never turns the still-running api-v2 strict before Pulumi has deleted it.
    "discovery": (
        {"api-v1", "web-v1"},
        {"protocol": "http", "mutualTLSMode": "permissive"},
        OPEN_MESH,
        ["api (non-mesh)"],
    ),
    "permissive": (
        {"api-v1", "api-v2", "web-v1"},
        {"protocol": "http", "mutualTLSMode": "permissive"},
        OPEN_MESH,
        ["api (mesh)", "api (non-mesh)"],
    ),
    "strict": ({"api-v2", "web-v1"}, STRICT, OPEN_MESH, ["api (mesh)"]),
    "virtual": ({"api-v2", "web-v2"}, STRICT, OPEN_MESH, ["api (mesh)"]),
    "hardened": ({"api-v2", "web-v2"}, {"protocol": "http"}, CLOSED_MESH, ["api (mesh)"]),
}


def phase_run(program, phase: str, overrides: dict[str, Any] | None = None):
    run = program({**(overrides or {}), "phase": phase}, stack="local")
    assert run.error is None, run.error
    return run


def entries(run, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, name) -> spec of every Consul config entry of `kind`."""
    return {(r.k8s_namespace, r.k8s_name): r.inputs["spec"] for r in run.of_type(f"{CONSUL}:{kind}")}


def deployments(run) -> dict[str, Any]:
    return {r.k8s_name: r for r in run.of_type(DEPLOYMENT)}


def pod(dep) -> dict[str, Any]:
    return dep.inputs["spec"]["template"]


def env(dep) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod(dep)["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_phase_runs_exactly_the_deployments_of_the_table(program, phase):
    assert set(deployments(phase_run(program, phase))) == TABLE[phase][0]


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_service_defaults_api_carries_the_phases_mtls_settings_and_nothing_else(program, phase):
    assert entries(phase_run(program, phase), "ServiceDefaults")[("api", "api")] == TABLE[phase][1]


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_mesh_entry_opens_permissive_mode_until_hardened(program, phase):
    assert entries(phase_run(program, phase), "Mesh") == {("consul", "mesh"): TABLE[phase][2]}


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_in_every_phase_web_may_call_api_and_proxies_speak_http_with_access_logs(program, phase):
    run = phase_run(program, phase)
    intentions = entries(run, "ServiceIntentions")[("api", "api")]
    assert intentions["destination"] == {"name": "api"}
    assert [(s["name"], s["action"]) for s in intentions["sources"]] == [("web", "allow")]
    fmt = json.dumps(ACCESS_LOG_FORMAT, sort_keys=True)  # the precheck's signal (migration/entries.py)
    assert entries(run, "ProxyDefaults") == {
        ("consul", "global"): {"config": {"protocol": "http"}, "accessLogs": {"enabled": True, "jsonFormat": fmt}}
    }
    assert entries(run, "ServiceDefaults")[("web", "web")] == {"protocol": "http"}


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_verify_names_the_upstreams_a_curl_through_the_gateway_shows(program, phase):
    verify = phase_run(program, phase).outputs["verify"]
    assert verify["expectUpstreams"] == TABLE[phase][3]
    assert verify["expectService"] == ["web (mesh)"]
    assert verify["curl"].startswith("for i in $(seq 20); do curl -s http://")
    assert "upstream_calls" in verify["curl"]
    nxt = PHASE_NAMES.index(phase) + 1
    if nxt < len(PHASE_NAMES):
        assert verify["next"] == f"make up STACK=local PHASE={PHASE_NAMES[nxt]}"
    else:
        assert "complete" in verify["next"]


def test_each_version_is_built_as_the_issue_describes(program):
    api_v1, web_v1 = (deployments(phase_run(program, "permissive"))[n] for n in ("api-v1", "web-v1"))
    api_v2 = deployments(phase_run(program, "permissive"))["api-v2"]
    web_v2 = deployments(phase_run(program, "virtual"))["web-v2"]
    inject = "consul.hashicorp.com/connect-inject"
    tproxy = "consul.hashicorp.com/transparent-proxy"

    assert pod(api_v1)["metadata"]["annotations"] == {inject: "false"}
    assert env(api_v1) == {
        "NAME": "api (non-mesh)",
        "MESSAGE": "Hello from api-v1",
        "LISTEN_ADDR": "0.0.0.0:9091",
        "UPSTREAM_URIS": "",
    }
    assert pod(api_v2)["metadata"]["annotations"][inject] == "true"
    assert pod(api_v2)["metadata"]["annotations"][tproxy] == "true"
    assert env(api_v2)["NAME"] == "api (mesh)"
    assert env(api_v2)["LISTEN_ADDR"] == "127.0.0.1:9091"  # reachable only through its sidecar

    for web, dns in ((web_v1, "service"), (web_v2, "virtual")):
        annotations = pod(web)["metadata"]["annotations"]
        assert annotations[inject] == annotations[tproxy] == "true"
        assert annotations["consul.hashicorp.com/consul-dns"] == "true"  # resolves *.virtual.consul
        assert env(web)["NAME"] == "web (mesh)"
        assert env(web)["UPSTREAM_URIS"] == f"http://api.{dns}.consul:9091"
        assert env(web)["LISTEN_ADDR"] == "0.0.0.0:9091"

    for dep, version in ((api_v1, "v1"), (api_v2, "v2"), (web_v1, "v1"), (web_v2, "v2")):
        app = dep.k8s_name.split("-")[0]
        assert pod(dep)["metadata"]["labels"] == {"app": app, "version": version}
        assert dep.k8s_namespace == app
        assert pod(dep)["spec"]["serviceAccountName"] == app


def test_in_permissive_both_api_versions_serve_behind_service_api(program):
    run = phase_run(program, "permissive")
    service = run.one("kubernetes:core/v1:Service", k8s_name="api")
    assert service.k8s_namespace == "api"
    assert service.inputs["spec"]["ports"] == [{"name": "http", "port": 9091, "targetPort": 9091}]
    selector = service.inputs["spec"]["selector"]
    serving = {n for n, d in deployments(run).items() if selector.items() <= pod(d)["metadata"]["labels"].items()}
    assert serving == {"api-v1", "api-v2"}
    accounts = {(r.k8s_namespace, r.k8s_name) for r in run.of_type("kubernetes:core/v1:ServiceAccount")}
    assert {a for a in accounts if a[0] != "mesh-checks"} == {("api", "api"), ("web", "web")}


@pytest.mark.parametrize("phase", ["permissive", "virtual"])
def test_every_demo_pod_is_pinned_probed_bounded_and_unprivileged(program, phase):
    for dep in deployments(phase_run(program, phase)).values():
        spec = pod(dep)["spec"]
        (container,) = spec["containers"]
        assert container["image"] == "nicholasjackson/fake-service:v0.26.0"
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 9091}
        assert set(container["resources"]) == {"requests", "limits"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 1000
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # Outside the mesh nothing needs a token; a sidecar logs in to Consul with it.
        in_mesh = pod(dep)["metadata"]["annotations"]["consul.hashicorp.com/connect-inject"] == "true"
        assert spec["automountServiceAccountToken"] is in_mesh


def test_a_version_is_the_same_deployment_in_every_phase_it_runs_in(program):
    """Zero downtime: a phase change creates or deletes whole Deployments, never rolls or replaces one."""
    seen: dict[str, Any] = {}
    for phase in PHASE_NAMES:
        for name, dep in deployments(phase_run(program, phase)).items():
            assert seen.setdefault(name, dep.inputs) == dep.inputs, f"{name} changes in {phase}"
            assert dep.options["deleteBeforeReplace"] is False
            assert "pulumi.com/skipAwait" not in (dep.inputs["metadata"].get("annotations") or {})
            strategy = dep.inputs["spec"]["strategy"]["rollingUpdate"]
            assert strategy == {"maxUnavailable": 0, "maxSurge": 1}
    assert set(seen) == {"api-v1", "api-v2", "web-v1", "web-v2"}


THIRD = {
    "services": [
        {"name": "api", "migrates": True},
        {"name": "payments", "namespace": "billing", "port": 9092, "migrates": True},
        {"name": "web", "upstreams": ["api", "payments"]},
    ]
}


def test_a_third_service_is_a_config_change(program):
    run = phase_run(program, "permissive", THIRD)
    deps = deployments(run)
    assert set(deps) == {"api-v1", "api-v2", "payments-v1", "payments-v2", "web-v1"}
    assert deps["payments-v2"].k8s_namespace == "billing"
    assert env(deps["payments-v2"])["LISTEN_ADDR"] == "127.0.0.1:9092"
    assert env(deps["payments-v1"])["NAME"] == "payments (non-mesh)"
    assert env(deps["web-v1"])["UPSTREAM_URIS"] == "http://api.service.consul:9091,http://payments.service.consul:9092"
    assert entries(run, "ServiceDefaults")[("billing", "payments")] == {
        "protocol": "http",
        "mutualTLSMode": "permissive",
    }
    payments = entries(run, "ServiceIntentions")[("billing", "payments")]
    assert [s["name"] for s in payments["sources"]] == ["web"]
    assert run.one("kubernetes:core/v1:Service", k8s_name="payments").inputs["spec"]["ports"][0]["port"] == 9092
    assert run.outputs["verify"]["expectUpstreams"] == [
        "api (mesh)",
        "api (non-mesh)",
        "payments (mesh)",
        "payments (non-mesh)",
    ]


@pytest.mark.parametrize(
    ("services", "message"),
    [
        # api-v1 runs outside the mesh and could not call web, which is strict mTLS from the start.
        ([{"name": "api", "migrates": True, "upstreams": ["web"]}, {"name": "web"}], "cannot call 'web'"),
        # The gateway owns the intentions of the service it exposes.
        (
            [
                {"name": "api", "migrates": True},
                {"name": "web", "upstreams": ["api"]},
                {"name": "x", "upstreams": ["web"]},
            ],
            "gateway's service",
        ),
    ],
)
def test_a_service_graph_the_migration_cannot_serve_is_refused_before_anything_is_built(program, services, message):
    run = program({"services": services}, stack="local")
    assert run.error is not None
    assert "consul-mesh-migration" in run.error
    assert "services[" in run.error
    assert message in run.error
    assert run.resources == []

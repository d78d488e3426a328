"""Destinations outside the mesh: what keeps a call to them working once the Mesh closes.

A fleet like the issue's: `api` migrates and calls an external payment API and the ledger (a VM
service its own agent registers); a VM service and a CronJob call `api`. With their own sidecars the
fleet reaches hardened; in plain text, the step to strict is refused naming them.
"""

from __future__ import annotations

from typing import Any

import pytest

from program.config import ConfigError, parse_config

PAYMENTS = {"name": "payments-api", "host": "api.payments.example.com", "port": 443}
SERVICES: list[dict[str, Any]] = [
    {"name": "api", "migrates": True, "upstreams": ["ledger"], "destinations": [PAYMENTS]},
    {"name": "web", "upstreams": ["api"]},
    {"name": "billing", "outside": "vm", "upstreams": ["api"], "sidecar": True},
    {"name": "nightly-report", "outside": "job", "namespace": "reports", "upstreams": ["api"], "sidecar": True},
    {"name": "ledger", "outside": "vm", "port": 5432},
]


def crs(run, kind: str) -> dict[str, Any]:
    return {r.k8s_name: r for r in run.resources if r.type.endswith(f":{kind}")}


@pytest.fixture(scope="module")
def hardened(program):
    run = program({"services": SERVICES, "phase": "hardened"}, deployed={"phase": "virtual"})
    assert run.error is None, run.error
    return run


def test_the_fleet_with_its_callers_sidecars_and_a_destination_plans_to_hardened():
    from migration.plan import plan

    cfg = parse_config({"services": SERVICES})
    rollout = plan(cfg.fleet(), cfg.target())
    assert rollout.blocked == ()
    assert [w["api"].value for w in rollout.waves][-1] == "hardened"


def test_in_plain_text_the_same_fleet_is_refused_at_strict_with_a_line_naming_what_blocks_it():
    plain = [{k: v for k, v in s.items() if k != "sidecar"} for s in SERVICES]
    with pytest.raises(ConfigError) as e:
        parse_config({"services": plain, "phase": "strict"})
    lines = str(e.value).splitlines()
    assert [line.split(" while ")[1].split(" calls ")[0] for line in lines] == [
        "'billing' (vm, outside the mesh)",
        "'nightly-report' (job, outside the mesh)",
    ]


def test_the_external_host_is_registered_in_consul_and_the_vm_service_is_not(hardened):
    regs = crs(hardened, "Registration")
    assert set(regs) == {"payments-api"}  # the ledger's own agent registers it
    reg = regs["payments-api"]
    assert reg.k8s_namespace is None  # cluster-scoped (registration_types.go +kubebuilder:resource:scope=Cluster)
    assert reg.inputs["spec"] == {
        "node": "external-payments-api",
        "address": "api.payments.example.com",
        "nodeMeta": {"external-node": "true"},
        # No check: nothing runs a catalog check, and an empty duration would fail copyHealthCheck.
        "service": {
            "name": "payments-api",
            "port": 443,
            "address": "api.payments.example.com",
            "weights": {"passing": 1, "warning": 1},
        },
    }


def test_a_terminating_gateway_links_every_destination_and_the_callers_are_allowed(hardened):
    (gateway,) = crs(hardened, "TerminatingGateway").values()
    assert (gateway.k8s_name, gateway.k8s_namespace) == ("terminating-gateway", "consul")
    assert gateway.inputs["spec"] == {"services": [{"name": "payments-api"}, {"name": "ledger"}]}
    intentions = {
        r.k8s_name: r
        for r in hardened.resources
        if r.type.endswith(":ServiceIntentions") and r.k8s_namespace == "consul"
    }
    for dest in ("payments-api", "ledger"):
        assert [s["name"] for s in intentions[dest].inputs["spec"]["sources"]] == ["api"]
    defaults = {
        r.k8s_name: r.inputs["spec"]
        for r in hardened.resources
        if r.type.endswith(":ServiceDefaults") and r.k8s_namespace == "consul"
    }
    assert defaults == {"payments-api": {"protocol": "tcp"}, "ledger": {"protocol": "tcp"}}
    # The callers outside the mesh, through their own sidecars, are allowed to api.
    api = next(r for r in hardened.resources if r.type.endswith(":ServiceIntentions") and r.k8s_name == "api")
    assert [s["name"] for s in api.inputs["spec"]["sources"]] == ["web", "billing", "nightly-report"]


def test_the_chart_runs_the_gateway_whose_entry_the_controller_needs(hardened):
    release = next(
        r for r in hardened.resources if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "consul"
    )
    assert release.inputs["values"]["terminatingGateways"] == {
        "enabled": True,
        "gateways": [{"name": "terminating-gateway"}],
    }


def test_the_mesh_closes_only_after_the_way_through_the_gateway_is_in_place(hardened):
    mesh = hardened.one("kubernetes:consul.hashicorp.com/v1alpha1:Mesh")
    assert mesh.inputs["spec"]["transparentProxy"] == {"meshDestinationsOnly": True}
    gateway = next(iter(crs(hardened, "TerminatingGateway").values()))
    registration = crs(hardened, "Registration")["payments-api"]
    assert {gateway.urn, registration.urn} <= set(mesh.dependencies)


def test_the_path_is_the_same_in_every_phase_so_a_caller_may_move_to_virtual_at_any_step(program, hardened):
    discovery = program({"services": SERVICES})
    assert discovery.error is None, discovery.error
    for kind in ("Registration", "TerminatingGateway"):
        assert {n: r.inputs["spec"] for n, r in crs(discovery, kind).items()} == {
            n: r.inputs["spec"] for n, r in crs(hardened, kind).items()
        }


def _env(run, deployment: str) -> dict[str, str]:
    d = next(r for r in run.resources if r.type == "kubernetes:apps/v1:Deployment" and r.k8s_name == deployment)
    return {e["name"]: e.get("value") for e in d.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_demo_caller_dials_a_destination_by_its_address_then_through_the_gateway(program, hardened):
    strict = program({"services": SERVICES, "phase": "strict"}, deployed={"phase": "permissive"})
    assert (
        _env(strict, "api-v2")["UPSTREAM_URIS"]
        == "http://api.payments.example.com:443,http://ledger.service.consul:5432"
    )
    # From virtual on: the terminating gateway's virtual address for each (listeners.go ServiceGatewayVirtualIPTag).
    assert (
        _env(hardened, "api-v2")["UPSTREAM_URIS"]
        == "http://payments-api.virtual.consul:443,http://ledger.virtual.consul:5432"
    )
    api_v2 = next(r for r in hardened.resources if r.type == "kubernetes:apps/v1:Deployment" and r.k8s_name == "api-v2")
    gateway = next(iter(crs(hardened, "TerminatingGateway").values()))
    assert gateway.urn in api_v2.dependencies  # it starts dialing them only once they are linked


def test_the_postcheck_counts_a_destination_by_its_name_and_only_its_200s(hardened):
    import json

    from meshcheck import mesh_check

    job = hardened.one("kubernetes:batch/v1:Job", "checks-postcheck")
    env = {e["name"]: e["value"] for e in job.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    post = mesh_check.parse_expectation(json.loads(env["MESH_CHECK_EXPECTATION"])).postcheck
    assert post is not None and post.gateway is not None
    assert post.gateway.reached == ("web", "api", "payments-api", "ledger")
    assert post.gateway.hosts == {"api.payments.example.com": "payments-api"}
    # fake-service v0.26.0's answer names each upstream call by its URI; the destinations answer as themselves.
    answer = {
        "name": "web (mesh)",
        "code": 200,
        "upstream_calls": {
            "http://api.api.svc:9091": {
                "name": "api (mesh)",
                "uri": "http://api.virtual.consul:9091",
                "code": 200,
                "upstream_calls": {
                    "http://api.payments.example.com:443": {"uri": "http://api.payments.example.com:443", "code": 200},
                    "http://ledger.service.consul:5432": {"uri": "http://ledger.service.consul:5432", "code": 502},
                },
            }
        },
    }
    services = [h.service for h in mesh_check.hops(answer, "web", hosts=post.gateway.hosts)]
    assert services == ["web", "api", "payments-api", "ledger"]
    assert "ledger at http://ledger.service.consul:5432 answered code 502" in mesh_check._failed_hop(
        answer, "web", post.gateway.hosts
    )

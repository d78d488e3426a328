"""The fleet through the real program under mocks: per-service phases, the guard per service, and
the call-graph rules refused before any migration object changes."""

from __future__ import annotations

import logging

import pytest

from migration.phases import PHASE_NAMES
from program.offline import run_program

CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DEFAULT = [{"name": "api", "migrates": True}, {"name": "web", "upstreams": ["api"]}]


def ok(run):
    assert run.error is None, run.error
    return run


def with_phases(**phases: str) -> list[dict[str, object]]:
    return [{**s, **({"phase": phases[s["name"]]} if s["name"] in phases else {})} for s in DEFAULT]


def deployments(run) -> set[str]:
    return {r.k8s_name for r in run.of_type(DEPLOYMENT)}


def spec(run, kind: str, name: str):
    return run.one(f"{CONSUL}:{kind}", k8s_name=name).inputs["spec"]


def env(run, name: str) -> dict[str, str]:
    dep = run.one(DEPLOYMENT, k8s_name=name)
    return {e["name"]: e["value"] for e in dep.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_a_service_phase_equal_to_the_stack_phase_renders_exactly_the_same_objects(program, stack, phase):
    """`phase` stays the default: existing stacks render the same objects with or without per-service phases."""
    i = PHASE_NAMES.index(phase)
    deployed = {"phase": PHASE_NAMES[i - 1]} if i else None
    plain = ok(program({"phase": phase}, stack=stack, deployed=deployed))
    explicit = ok(
        program({"phase": phase, "services": with_phases(api=phase, web=phase)}, stack=stack, deployed=deployed)
    )
    assert {r.urn: r.inputs for r in plain.resources} == {r.urn: r.inputs for r in explicit.resources}


def test_each_service_runs_the_versions_of_its_own_phase(program):
    run = ok(program({"phase": "permissive", "services": with_phases(web="virtual")}, stack="local"))
    assert deployments(run) == {"api-v1", "api-v2", "web-v2"}
    assert env(run, "web-v2")["UPSTREAM_URIS"] == "http://api.virtual.consul:9091"
    assert spec(run, "ServiceDefaults", "api") == {"protocol": "http", "mutualTLSMode": "permissive"}
    assert run.outputs["phases"] == {"api": "permissive", "web": "virtual"}
    assert run.outputs["phase"] == "permissive"  # the fleet's least advanced


def test_the_race_free_order_takes_api_strict_without_the_dialed_directly_exception(program):
    deployed = {"phases": {"api": "permissive", "web": "virtual"}, "dialedDirectly": []}
    run = ok(program({"phase": "strict", "services": with_phases(web="virtual")}, stack="local", deployed=deployed))
    assert spec(run, "ServiceDefaults", "api") == {"protocol": "http", "mutualTLSMode": "strict"}
    assert run.outputs["dialedDirectly"] == []


def test_a_caller_back_on_service_dns_starts_only_after_its_strict_upstream_allows_dialing_pod_ips(program):
    deployed = {"phases": {"api": "strict", "web": "virtual"}, "dialedDirectly": []}
    run = ok(program({"phase": "strict"}, stack="local", deployed=deployed))
    assert spec(run, "ServiceDefaults", "api")["transparentProxy"] == {"dialedDirectly": True}
    web_v1 = run.one(DEPLOYMENT, k8s_name="web-v1")
    assert run.depends_on(web_v1, run.one(f"{CONSUL}:ServiceDefaults", k8s_name="api"))


def test_a_graph_rule_the_target_alone_breaks_is_refused_before_any_resource(program):
    run = program({"phase": "discovery", "services": with_phases(web="virtual")}, stack="local")
    assert run.error is not None
    assert run.resources == []
    # Named by the service, with where this stack file (the older list form) has it.
    assert "config consul-mesh-migration:phases.web (here services[1].phase):" in run.error
    assert "'web' cannot dial api.virtual.consul" in run.error
    assert "move 'api' to permissive first" in run.error


def test_a_rule_the_step_breaks_is_refused_before_any_migration_object(program):
    """web-v1 runs until the end of the `up` that moves web to virtual: api may not drop its exception then."""
    deployed = {"phases": {"api": "virtual", "web": "strict"}}
    run = program({"phase": "hardened", "services": with_phases(web="virtual")}, stack="local", deployed=deployed)
    assert run.error is not None
    assert "config consul-mesh-migration:phase: 'api' cannot drop its exceptions" in run.error
    assert run.of_type(DEPLOYMENT) == []
    assert run.of_type(f"{CONSUL}:ServiceDefaults") == []


def test_the_guard_reads_a_stack_deployed_with_only_the_single_phase_output(program):
    run = ok(
        program(
            {"phase": "strict", "services": with_phases(web="virtual")}, stack="local", deployed={"phase": "strict"}
        )
    )
    assert run.outputs["phases"] == {"api": "strict", "web": "virtual"}
    refused = program({"phase": "hardened"}, stack="local", deployed={"phase": "permissive"})
    assert "'api', 'web': phase 'hardened' is 3 steps from the deployed phase 'permissive'" in (refused.error or "")


def test_a_stack_whose_last_up_did_not_finish_may_only_rerun_it_or_go_back(program):
    """Both seals: Pulumi kept the permissive seal because the strict `up` failed after writing its outputs."""
    strict = ok(program({"phase": "strict"}, stack="local", deployed={"phase": "permissive"})).outputs
    permissive = ok(program({"phase": "permissive"}, stack="local", deployed={"phase": "discovery"})).outputs
    unfinished = {**permissive, **strict}
    assert len([k for k in unfinished if k.startswith("seal-")]) == 2
    ok(program({"phase": "strict"}, stack="local", deployed=unfinished))
    ok(program({"phase": "permissive"}, stack="local", deployed=unfinished))
    refused = program({"phase": "virtual"}, stack="local", deployed=unfinished)
    assert "did not finish" in (refused.error or "")
    assert "api/api-v1" in str(strict[next(k for k in strict if k.startswith("seal-"))]["retires"])


def test_hardened_with_a_service_held_back_keeps_the_mesh_open_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        run = ok(
            run_program(
                {"phase": "hardened", "services": [*with_phases(), {"name": "slow", "phase": "virtual"}]},
                stack="local",
                deployed={"phase": "virtual"},
            )
        )
    assert spec(run, "Mesh", "mesh")["allowEnablingPermissiveMutualTLS"] is True
    assert any(
        "slow=virtual held back" in r.getMessage() and "Mesh stays open" in r.getMessage() for r in caplog.records
    )


def test_a_chain_of_migrating_services_moves_one_after_the_other(program):
    services = [
        {"name": "payments", "namespace": "billing", "migrates": True},
        {"name": "orders", "migrates": True, "upstreams": ["payments"]},
        {"name": "web", "upstreams": ["orders"]},
    ]
    deployed = {"phases": {"payments": "permissive", "orders": "permissive", "web": "permissive"}}
    together = program({"phase": "strict", "services": services}, stack="local", deployed=deployed)
    assert "'payments' cannot refuse plain text (strict) while orders-v1 runs outside the mesh" in (
        together.error or ""
    )
    held = [{**services[0], "phase": "permissive"}, *services[1:]]
    run = ok(program({"phase": "strict", "services": held}, stack="local", deployed=deployed))
    assert deployments(run) == {"payments-v1", "payments-v2", "orders-v2", "web-v1"}
    assert env(run, "orders-v2")["UPSTREAM_URIS"] == "http://payments.service.consul:9091"

"""How one `pulumi up` moves the migration: order, the phase guard, and what a phase change touches."""

from __future__ import annotations

import logging

import pytest

from migration.phases import PHASE_NAMES
from ops.plan import objects
from program.offline import run_program

CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1"
MIGRATION_COMPONENTS = (
    "consul-mesh-migration:services:DemoServices",
    "consul-mesh-migration:mesh_config:MeshConfig",
    "consul-mesh-migration:checks:MeshChecks",
)


def migration_objects(run):
    """The Kubernetes objects the migration components own (Deployments, Services, config entries...)."""
    return [r for r in objects(run).values() if any(a.type in MIGRATION_COMPONENTS for a in run.ancestors(r))]


def ok(run):
    assert run.error is None, run.error
    return run


def step_run(program, stack: str, phase: str):
    """`pulumi up` in `phase` on a stack that has the phase before it deployed (none for the first)."""
    i = PHASE_NAMES.index(phase)
    return program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]} if i else None)


# --- order ---------------------------------------------------------------------------------------


def test_strict_mtls_applies_only_once_web_is_allowed_to_call_api(program):
    run = ok(program({"phase": "strict"}, stack="local"))
    defaults = run.one(f"{CONSUL}:ServiceDefaults", k8s_name="api")
    assert defaults.inputs["spec"]["mutualTLSMode"] == "strict"
    assert run.depends_on(defaults, run.one(f"{CONSUL}:ServiceIntentions", k8s_name="api"))
    # Consul refuses mutualTLSMode permissive unless the Mesh entry allows it.
    assert run.depends_on(defaults, run.one(f"{CONSUL}:Mesh"))


def test_the_mesh_version_starts_only_once_its_service_defaults_accept_plain_text_callers(program):
    run = ok(program({"phase": "permissive"}, stack="local"))
    api_v2 = run.one("kubernetes:apps/v1:Deployment", k8s_name="api-v2")
    assert run.depends_on(api_v2, run.one(f"{CONSUL}:ServiceDefaults", k8s_name="api"))
    web = run.one("kubernetes:apps/v1:Deployment", k8s_name="web-v1")
    assert run.depends_on(web, run.one(f"{CONSUL}:ServiceIntentions", k8s_name="api"))
    for dep in run.of_type("kubernetes:apps/v1:Deployment"):
        name = dep.k8s_name.split("-")[0]
        assert run.depends_on(dep, run.one("kubernetes:core/v1:Service", k8s_name=name))
        assert run.depends_on(dep, run.one("kubernetes:core/v1:ServiceAccount", k8s_name=name))


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_migration_object_waits_for_the_guard_and_the_consul_release(program, phase):
    run = ok(program({"phase": phase}, stack="local"))
    release = run.one("kubernetes:helm.sh/v3:Release")
    found = migration_objects(run)
    assert {r.kind for r in found} >= {"Deployment", "Service", "ServiceAccount", "ServiceDefaults", "Mesh"}
    for res in found:
        assert any("pulumi:pulumi:StackReference::deployed" in d for d in res.dependencies), res.name
        assert run.depends_on(res, release), res.name
        assert res.provider.startswith(run.one("pulumi:providers:kubernetes").urn), res.name
        namespace = res.k8s_namespace
        if namespace not in (None, "consul"):
            assert run.depends_on(res, run.one("kubernetes:core/v1:Namespace", k8s_name=namespace)), res.name


# --- the guard -----------------------------------------------------------------------------------


def test_a_jump_is_refused_before_any_migration_object_is_registered(program):
    run = program({"phase": "hardened"}, stack="local", deployed={"phase": "discovery"})
    assert run.error is not None
    assert "'discovery'" in run.error
    assert "discovery, permissive" in run.error  # the phases allowed now
    assert "allowPhaseJump" in run.error
    assert migration_objects(run) == []
    assert [r for r in run.resources if r.type in MIGRATION_COMPONENTS] == []
    assert run.of_type("kubernetes:apps/v1:Deployment") == []
    # What Consul config is there is the gateway's own, which no phase changes.
    for res in run.resources:
        if res.type.startswith(CONSUL):
            assert any(a.type == "consul-mesh-migration:gateway:ApiGateway" for a in run.ancestors(res)), res.name


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_a_fresh_stack_may_start_in_any_phase(program, phase):
    assert ok(program({"phase": phase}, stack="local")).outputs["phase"] == phase


def test_running_the_deployed_phase_again_changes_nothing(program):
    again = ok(program({"phase": "strict"}, stack="local", deployed={"phase": "strict"}))
    fresh = ok(program({"phase": "strict"}, stack="local"))
    assert {u: r.inputs for u, r in objects(again).items()} == {u: r.inputs for u, r in objects(fresh).items()}


def test_allow_phase_jump_forces_the_step_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_program({"phase": "hardened", "allowPhaseJump": True}, stack="local", deployed={"phase": "discovery"})
    assert run.error is None, run.error
    assert run.outputs["phase"] == "hardened"
    assert {r.k8s_name for r in run.of_type("kubernetes:apps/v1:Deployment")} == {"api-v2", "web-v2"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("allowPhaseJump" in w and "'discovery'" in w and "'hardened'" in w for w in warnings), warnings


# --- what a phase change touches -----------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES[1:])
def test_a_phase_change_touches_only_migration_objects(program, stack, phase):
    """Never the VPC, cluster, node group, LB controller, Consul release or gateway; in either direction."""
    before = ok(step_run(program, stack, PHASE_NAMES[PHASE_NAMES.index(phase) - 1]))
    after = ok(step_run(program, stack, phase))
    old, new = objects(before), objects(after)
    differing = {u for u in old.keys() | new.keys() if u not in old or u not in new or old[u].inputs != new[u].inputs}
    assert differing, "a phase change must change something"
    owned = {r.urn for r in migration_objects(before) + migration_objects(after)}
    assert differing <= owned, sorted(differing - owned)
    platform = {u for u in old if u not in owned}
    assert {u: old[u].inputs for u in platform} == {u: new[u].inputs for u in platform}
    kinds = {old[u].kind for u in platform} | {old[u].k8s_name or old[u].name for u in platform}
    expected = {"Release", "consul-release", "Gateway", "HTTPRoute"}
    if stack == "dev":
        expected |= {"Vpc", "Cluster", "ManagedNodeGroup", "lb-controller-release"}
    assert expected <= kinds, sorted(expected - kinds)

"""A fleet of workloads a team runs (`services[i].workload`): the same phases and rules as the demo's,
read over one pod template per service instead of a Deployment per version (migration/phases.py).

Pure model tests: no Pulumi.
"""

from __future__ import annotations

import pytest

from migration.fleet import AddressVariable, Adopted, Fleet, FleetError, Service, check_graph
from migration.phases import Phase, legacy_gone, versions
from migration.plan import plan
from migration.step import Step, check_step, dialed_directly
from migration.workloads import workloads

from .test_planner import CHAIN, assert_valid

D, P, S, V, H = Phase


def adopted(name: str, namespace: str, **kw: object) -> Service:
    return Service(name, namespace, port=8080, workload=Adopted("Deployment", name), **kw)  # type: ignore[arg-type]


# The demo's chain, as the team's own Deployments: web -> orders -> payments.
TEAM = Fleet(
    (
        adopted("payments", "billing", migrates=True),
        adopted("orders", "shop", migrates=True, upstreams=("payments",)),
        adopted("web", "shop", upstreams=("orders",)),
    ),
    "web",
)


def refused(fleet: Fleet, step: Step) -> str:
    with pytest.raises(FleetError) as err:
        check_step(fleet, step)
    return str(err.value)


def test_an_adopted_workload_is_one_pod_template_rolled_from_one_state_to_the_next():
    """No v1 beside v2 at permissive: the rolling update that injects the sidecar replaces the pods."""
    assert [versions(p, True, adopted=True) for p in Phase] == [("v1",), ("v2",), ("v2",), ("v2",), ("v2",)]
    assert [versions(p, False, adopted=True) for p in Phase] == [versions(p, False) for p in Phase]
    # The demo's migrating service keeps its v1 until strict.
    assert versions(P, True) == ("v1", "v2")


def test_no_pod_runs_outside_the_mesh_from_permissive_on_for_an_adopted_service():
    assert legacy_gone(True, adopted=True) is P
    assert legacy_gone(True) is S
    assert legacy_gone(False) is D


def test_an_adopted_caller_at_permissive_lets_its_upstream_refuse_plain_text():
    """orders' pods all carry a sidecar once its roll finished; the demo's orders-v1 would still run."""
    step = Step({"payments": S, "orders": P, "web": S}, {"payments": P, "orders": P, "web": S})
    check_step(TEAM, step)
    assert "orders-v1 runs outside the mesh" in refused(CHAIN, step)


def test_an_upstream_cannot_go_strict_in_the_up_that_injects_its_adopted_caller():
    """During that roll, orders' old pods (no sidecar) still call payments in plain text."""
    text = refused(TEAM, Step({"payments": S, "orders": P, "web": S}, {"payments": P, "orders": D, "web": S}))
    assert "orders's pods without a sidecar run outside the mesh until the end of this `up`" in text
    assert "move 'orders' to permissive first" in text


def test_stepping_an_adopted_caller_back_out_of_the_mesh_is_refused_while_its_upstream_is_strict():
    text = refused(TEAM, Step({"payments": S, "orders": D, "web": S}, {"payments": S, "orders": P, "web": S}))
    assert "'payments' cannot refuse plain text (strict)" in text


def test_dialed_directly_is_derived_as_for_the_demo():
    """web (in the mesh from the start) dials orders.service.consul until it reaches virtual: the pod
    IPs, which a strict orders accepts only through dialedDirectly; with web's pods rolled to the
    virtual address first, orders goes strict without it."""
    assert dialed_directly(
        TEAM, Step({"payments": S, "orders": S, "web": S}, {"payments": S, "orders": P, "web": S}), "orders"
    )
    assert not dialed_directly(
        TEAM, Step({"payments": S, "orders": S, "web": V}, {"payments": S, "orders": P, "web": V}), "orders"
    )


def test_the_team_fleet_needs_one_wave_fewer_than_the_demo_chain():
    start = dict.fromkeys(TEAM.names, D)
    result = plan(TEAM, start)
    assert_valid(TEAM, start, result.waves)
    assert len(result.waves) == 4
    assert len(plan(CHAIN, start).waves) == 5
    assert result.waves[1]["payments"] is S  # right after orders' sidecars joined


def test_an_adopted_workload_is_never_a_deployment_the_program_runs():
    """Only demo services become `<name>-v1`/`<name>-v2` Deployments."""
    mixed = Fleet((adopted("api", "shop", migrates=True), Service("web", "web", upstreams=("api",))), "web")
    assert [w.name for w in workloads(mixed, {"api": P, "web": P})] == ["web-v1"]


def test_the_gateway_routes_http_only():
    """The API gateway's HTTPRoute speaks HTTP to its backend (consul-k8s api-gateway binding)."""
    fleet = Fleet(
        (adopted("api", "shop", migrates=True), adopted("web", "shop", protocol="grpc", upstreams=("api",))), "web"
    )
    with pytest.raises(FleetError, match="gateway's service 'web' speaks grpc"):
        check_graph(fleet)
    check_graph(Fleet((adopted("web", "shop", protocol="http2"),), "web"))


def test_an_address_variable_names_one_of_the_callers_upstreams():
    fleet = Fleet(
        (adopted("api", "shop", migrates=True), adopted("web", "shop", addresses=(AddressVariable("db", "DB_ADDR"),))),
        "web",
    )
    with pytest.raises(FleetError, match="DB_ADDR holds the address of 'db', which is not an upstream"):
        check_graph(fleet)


def test_the_virtual_address_fills_the_teams_template():
    assert AddressVariable("api", "API_URL", "http://{host}:{port}/v1").virtual(8080) == (
        "http://api.virtual.consul:8080/v1"
    )
    assert AddressVariable("api", "API_ADDR").virtual(9000) == "api.virtual.consul:9000"

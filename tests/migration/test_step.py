"""One step: what a `pulumi up` from the deployed phases to the selected ones may do (migration/step.py).

Pure model tests: no Pulumi. Each rule is shown accepted and refused, with the failure it prevents;
the derived dialedDirectly and the known windows of a strict flip, either way.
"""

from __future__ import annotations

import itertools

import pytest

from migration.fleet import Fleet, FleetError, Service
from migration.phases import Phase
from migration.step import Step, check_step, dialed_directly
from migration.workloads import Workload, workloads
from tests.migration.test_fleet import API, CHAIN, DEMO, WEB, refused

D, P, S, V, H = Phase

# --- plain text: a service refuses it only once no caller's legacy version runs ------------------


def test_a_migrating_callee_may_go_strict_once_its_migrating_caller_left_the_legacy_version_behind():
    phases = {"payments": S, "orders": S, "web": S}
    check_step(CHAIN, Step(phases, {"payments": P, "orders": S, "web": S}))


@pytest.mark.parametrize(
    ("deployed_orders", "orders"),
    [(P, P), (P, S)],  # orders-v1 still runs, or runs until the end of this very `up`
)
def test_a_callee_going_strict_while_a_caller_v1_runs_outside_the_mesh_is_refused(deployed_orders, orders):
    """Without it, orders-v1's plain-text calls are reset by payments' strict sidecar until orders-v1 is gone."""
    step = Step({"payments": S, "orders": orders, "web": S}, {"payments": P, "orders": deployed_orders, "web": S})
    message = refused(CHAIN, step)
    assert "'payments' cannot refuse plain text" in message
    assert "orders-v1" in message
    assert "move 'orders' to strict first, then 'payments'" in message


# --- virtual: a caller dials virtual addresses only once its upstream has a mesh version ---------


def test_a_caller_may_dial_a_virtual_address_once_its_upstream_is_in_the_mesh():
    check_step(DEMO, Step({"api": P, "web": V}, {"api": P, "web": S}))


@pytest.mark.parametrize(("deployed_api", "api"), [(D, D), (D, P), (P, D)])
def test_dialing_a_virtual_address_without_a_mesh_version_is_refused(deployed_api, api):
    """A virtual address answers for mesh instances only: with none, every call from web-v2 fails."""
    message = refused(DEMO, Step({"api": api, "web": V}, {"api": deployed_api, "web": V}))
    assert "'web' cannot dial api.virtual.consul" in message
    assert "move 'api' to permissive first" in message


def test_a_leaving_caller_version_on_virtual_addresses_keeps_the_upstreams_mesh_version_needed():
    """Issue 17's counter-example: web-v2, still dialing api.virtual.consul, runs until the end of the `up`
    beside the api-v2 being deleted (Pulumi deletes unrelated objects in parallel, after the program)."""
    message = refused(DEMO, Step({"api": D, "web": S}, {"api": P, "web": V}))
    assert message == (
        "'web' cannot dial api.virtual.consul ('web' at virtual until the end of this `up`) while 'api' has no "
        "mesh version ('api' at discovery); move 'api' to permissive first"
    )


def _virtual_failures(fleet: Fleet, before: dict[str, Phase], target: dict[str, Phase]) -> set[tuple[str, str]]:
    """A direct model of one `up`, from the Deployments themselves (migration/workloads.py): which run
    at its start, which Pulumi creates or updates during it (unordered with respect to each other unless
    the program orders them) and which it deletes at the end (in parallel, after every create). A call
    to `<up>.virtual.consul` fails whenever a Deployment that dials it is alive while no mesh Deployment
    of `up` is (Consul answers a virtual address with mesh instances only)."""
    start = {w.name: w for w in workloads(fleet, before)}
    end = {w.name: w for w in workloads(fleet, target)}
    failures: set[tuple[str, str]] = set()
    for s in fleet.services:
        for up in s.upstreams:
            if not fleet.service(up).migrates:
                continue
            uri = f"http://{up}.virtual.consul:"

            def dialing(ws: dict[str, Workload], s: Service = s, uri: str = uri) -> set[str]:
                return {n for n, w in ws.items() if w.service is s and any(u.startswith(uri) for u in w.upstream_uris)}

            def mesh(ws: dict[str, Workload], up: str = up) -> set[str]:
                return {n for n, w in ws.items() if w.service.name == up and w.in_mesh}

            # At the start, and while new or updated pods come up beside the old ones.
            alive_early = dialing(start) | dialing(end)
            if alive_early and not mesh(start):
                failures.add((s.name, up))
            # At the end: a leaving dialer may outlive the upstream's leaving mesh Deployments.
            if (dialing(start) | dialing(end)) and not mesh(end):
                failures.add((s.name, up))
    return failures


FLEETS = {
    "demo": DEMO,
    "chain": CHAIN,
    "two callers": Fleet((API, WEB, Service("admin", "admin", migrates=True, upstreams=("api",))), exposed="web"),
}


@pytest.mark.parametrize("name", sorted(FLEETS))
def test_the_virtual_rule_refuses_exactly_the_steps_where_a_virtual_call_would_fail(name):
    """Every deployed state and every step the guard allows (each service one phase at most), against
    the model above."""
    fleet = FLEETS[name]
    names = fleet.names
    compared = 0
    for before in itertools.product(Phase, repeat=len(names)):
        options = [[p for p in Phase if abs(p.index - b.index) <= 1] for b in before]
        for target in itertools.product(*options):
            b, t = dict(zip(names, before, strict=True)), dict(zip(names, target, strict=True))
            try:
                check_step(fleet, Step(t, b))
                refused_by_rule: set[tuple[str, str]] = set()
            except FleetError as err:
                refused_by_rule = {
                    (p.service or "", p.text.split(" cannot dial ")[1].split(".virtual.consul")[0])
                    for p in err.problems
                    if ".virtual.consul" in p.text
                }
            assert refused_by_rule == _virtual_failures(fleet, b, t), (b, t)
            compared += 1
    assert compared > 100


# --- hardened: exceptions go only once no caller dials pod IPs -----------------------------------


def test_a_service_drops_its_exceptions_once_every_caller_uses_virtual_addresses():
    check_step(DEMO, Step({"api": H, "web": V}, {"api": V, "web": V}))


@pytest.mark.parametrize(("deployed_web", "web"), [(S, S), (S, V)])
def test_dropping_the_exceptions_while_a_caller_dials_service_dns_is_refused(deployed_web, web):
    """web-v1 dials api's pod IPs; a strict sidecar accepts those only while dialedDirectly is on."""
    message = refused(DEMO, Step({"api": H, "web": web}, {"api": V, "web": deployed_web}))
    assert "'api' cannot drop its exceptions (hardened)" in message
    assert "move 'web' to virtual first" in message


def test_a_refusal_names_the_service_whose_setting_must_change():
    with pytest.raises(FleetError) as err:
        check_step(DEMO, Step({"api": H, "web": S}))
    assert [(p.service, p.setting) for p in err.value.problems] == [("api", "")]


# --- derived: dialedDirectly -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployed", "target", "expected"),
    [
        # A fresh stack: what earlier versions of this program deployed.
        (None, {"api": S, "web": S}, True),
        (None, {"api": V, "web": V}, True),
        (None, {"api": P, "web": P}, False),  # never with permissive: mTLS to the pod port would reach the app raw
        (None, {"api": H, "web": H}, False),
        # The single-phase rollout keeps it through virtual, as before.
        ({"api": P, "web": P}, {"api": S, "web": S}, True),
        ({"api": S, "web": S}, {"api": V, "web": V}, True),  # web-v1 runs until the end of this `up`
        ({"api": V, "web": V}, {"api": H, "web": H}, False),
        # The race-free order: web on virtual addresses before api goes strict; api never needs it.
        ({"api": P, "web": V}, {"api": S, "web": V}, False),
        ({"api": S, "web": V}, {"api": V, "web": V}, False),
        # web steps back to service DNS: api needs it again before web-v1 starts.
        ({"api": S, "web": V}, {"api": S, "web": S}, True),
    ],
)
def test_dialed_directly_is_on_only_while_strict_with_a_caller_on_service_dns(deployed, target, expected):
    assert dialed_directly(DEMO, Step(target, deployed), "api") is expected


def test_dialed_directly_stays_while_the_service_keeps_its_phase_so_a_rerun_changes_nothing():
    after_web_moved = Step({"api": S, "web": V}, {"api": S, "web": S})
    assert dialed_directly(DEMO, after_web_moved, "api")
    rerun = Step({"api": S, "web": V}, {"api": S, "web": V}, deployed_dialed_directly=frozenset({"api"}))
    assert dialed_directly(DEMO, rerun, "api")
    api_moves_on = Step({"api": V, "web": V}, {"api": S, "web": V}, deployed_dialed_directly=frozenset({"api"}))
    assert not dialed_directly(DEMO, api_moves_on, "api")


def test_a_service_in_the_mesh_from_the_start_gets_the_exception_when_a_caller_dials_it_by_service_dns():
    """web-v1 dialing db's pod IPs would otherwise be refused by db's sidecar, strict from the start."""
    fleet = Fleet((Service("db", "db"), Service("web", "web", upstreams=("db",))), exposed="web")
    assert dialed_directly(fleet, Step({"db": D, "web": D}), "db")
    assert not dialed_directly(fleet, Step({"db": V, "web": V}, {"db": V, "web": V}), "db")


# --- known windows ------------------------------------------------------------------------------


def test_the_strict_flip_with_a_caller_on_service_dns_is_allowed_with_its_window_named():
    warnings = check_step(DEMO, Step({"api": S, "web": S}, {"api": P, "web": P}))
    assert len(warnings) == 1
    assert "'api' permissive -> strict" in warnings[0]
    assert "200 ms" in warnings[0]
    assert "move web to virtual first" in warnings[0]


def test_a_step_back_from_strict_names_the_safe_way_back():
    (warning,) = check_step(DEMO, Step({"api": P, "web": P}, {"api": S, "web": S}))
    assert "step back" in warning
    assert "no safe single step back" in warning
    assert "the safe way back: move web to virtual first, then step 'api' back" in warning


def test_the_race_free_order_has_no_window():
    assert check_step(DEMO, Step({"api": S, "web": V}, {"api": P, "web": V})) == []
    assert check_step(DEMO, Step({"api": P, "web": V}, {"api": S, "web": V})) == []

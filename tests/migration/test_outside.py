"""Services outside the mesh (migration/outside.py): callers that never move, destinations the mesh calls."""

from __future__ import annotations

import pytest

from migration.fleet import Fleet, FleetError, Service, check_graph
from migration.outside import Destination, Outside
from migration.phases import Phase
from migration.plan import ceilings, plan
from migration.step import Step, check_step

D, P, S, V, H = Phase

PAYMENTS_API = Destination("payments-api", 443, host="api.payments.example.com")
LEDGER = Destination("ledger", 5432)  # a VM service its own Consul agent registers


def fleet(*outside: Outside) -> Fleet:
    """api migrates and calls the external payments API and the ledger on a VM; web calls api."""
    return Fleet(
        (
            Service("api", "api", migrates=True, destinations=(PAYMENTS_API, LEDGER)),
            Service("web", "web", upstreams=("api",)),
        ),
        "web",
        outside=outside,
    )


VM = Outside("billing", "vm", upstreams=("api",))
CRON = Outside("nightly-report", "job", upstreams=("api",))


@pytest.mark.parametrize("caller", [VM, CRON], ids=["vm", "job"])
def test_a_plain_text_caller_outside_the_mesh_keeps_its_upstream_from_refusing_plain_text(caller):
    f = fleet(caller)
    check_graph(f)
    check_step(f, Step({"api": P, "web": P}, {"api": D, "web": D}))
    with pytest.raises(FleetError) as e:
        check_step(f, Step({"api": S, "web": V}, {"api": P, "web": S}))
    (line,) = str(e.value).splitlines()
    assert line.startswith(f"'api' cannot refuse plain text (strict) while {caller.name!r} ({caller.kind}, outside")
    assert "set sidecar: true, or keep 'api' permissive" in line


def test_what_unblocks_it_is_named_per_kind():
    assert "consul connect envoy -sidecar-for billing" in VM.unblock("api")
    # consul-k8s v2.0.3 AnnotationEnableConsulDataplaneAsSidecar: a native sidecar ends with the Job.
    assert "consul.hashicorp.com/enable-consul-dataplane-as-sidecar" in CRON.unblock("api")


def test_an_outside_caller_with_its_own_sidecar_calls_in_mtls_and_blocks_nothing():
    f = fleet(Outside("billing", "vm", upstreams=("api",), sidecar=True))
    check_step(f, Step({"api": H, "web": H}, {"api": V, "web": H}))
    assert plan(f, {"api": D, "web": D}).blocked == ()


def test_a_plain_text_caller_of_a_service_in_the_mesh_from_the_start_is_refused_with_the_graph():
    with pytest.raises(
        FleetError,
        match=r"'billing' \(vm, outside the mesh\) calls 'web' in plain text, but 'web' is in the mesh from the start",
    ):
        check_graph(fleet(Outside("billing", "vm", upstreams=("web",))))


def test_an_outside_service_calls_only_services_of_the_mesh_and_names_are_unique():
    with pytest.raises(FleetError, match="'billing' is outside the mesh and calls 'ledger', which is not a service"):
        check_graph(fleet(Outside("billing", "vm", upstreams=("ledger",), sidecar=True)))
    with pytest.raises(FleetError, match="names must be unique; repeated: payments-api"):
        check_graph(fleet(Outside("payments-api", "cluster", sidecar=True)))


def test_the_plan_stops_the_upstream_at_permissive_and_says_why():
    p = plan(fleet(VM), {"api": D, "web": D})
    assert p.waves[-1] == {"api": P, "web": H}
    (line,) = p.blocked
    assert line.startswith("'api' stops at permissive: 'billing' (vm, outside the mesh) calls it in plain text;")
    before = {"api": D, "web": D}
    for wave in p.waves:  # every wave the planner proposes passes the rules
        check_step(fleet(VM), Step(wave, before))
        before = wave


def test_what_a_stopped_caller_still_dials_through_service_dns_cannot_drop_its_exceptions():
    f = Fleet(
        (
            Service("db", "db", migrates=True),
            Service("api", "api", migrates=True, upstreams=("db",)),
            Service("web", "web", upstreams=("api",)),
        ),
        "web",
        outside=(VM,),
    )
    caps = ceilings(f)
    assert caps["api"][0] is P
    # api stays at permissive: its v1 keeps running, so db cannot refuse plain text either.
    assert caps["db"] == (P, "'api' stops at permissive, so api-v1 keeps running")
    assert "web" not in caps
    assert plan(f, {n: D for n in f.names}).waves[-1] == {"db": P, "api": P, "web": H}


def test_a_destination_is_dialed_by_its_own_address_until_the_callers_virtual_phase():
    assert PAYMENTS_API.address("service") == "api.payments.example.com:443"
    assert LEDGER.address("service") == "ledger.service.consul:5432"  # registered by the VM's agent
    # Then through the terminating gateway's virtual IP for it (Consul listeners.go,
    # ServiceGatewayVirtualIPTag; golden transparent-proxy-terminating-gateway.latest.golden).
    assert PAYMENTS_API.address("virtual") == "payments-api.virtual.consul:443"
    assert fleet().destinations() == {"payments-api": (PAYMENTS_API, ("api",)), "ledger": (LEDGER, ("api",))}

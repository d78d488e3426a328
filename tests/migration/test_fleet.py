"""The fleet: each service at its own phase, and what its call graph allows (migration/fleet.py); the steps
themselves are tests/migration/test_step.py.

Pure model tests: no Pulumi. Each rule is shown accepted and refused, with the failure it prevents.
"""

from __future__ import annotations

import pytest

from migration import entries
from migration.fleet import Fleet, FleetError, Service, check_graph
from migration.phases import Phase, mesh_closed
from migration.step import Step, check_step
from migration.workloads import workloads

D, P, S, V, H = Phase

API = Service("api", "api", migrates=True)
WEB = Service("web", "web", upstreams=("api",))
DEMO = Fleet((API, WEB), exposed="web")
# A chain of migrating services behind a mesh front: web -> orders -> payments.
CHAIN = Fleet(
    (
        Service("payments", "billing", migrates=True),
        Service("orders", "orders", migrates=True, upstreams=("payments",)),
        Service("web", "web", upstreams=("orders",)),
    ),
    exposed="web",
)


def refused(fleet: Fleet, step: Step) -> str:
    with pytest.raises(FleetError) as err:
        check_step(fleet, step)
    return str(err.value)


# --- the static graph ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("services", "exposed", "words"),
    [
        # api-v1 runs outside the mesh; web is strict mTLS from the start.
        ((Service("api", "api", migrates=True, upstreams=("web",)), Service("web", "web")), "web", ["'api' migrates"]),
        (
            (
                Service("a", "a", migrates=True, upstreams=("b",)),
                Service("b", "b", migrates=True, upstreams=("a",)),
                Service("w", "w", upstreams=("a",)),
            ),
            "w",
            ["a -> b -> a", "break the cycle"],
        ),
        (
            (API, Service("web", "web", migrates=True, upstreams=("api",))),
            "web",
            ["gateway's service 'web' migrates", "503"],
        ),
        ((API, WEB, Service("x", "x", upstreams=("web",))), "web", ["gateway's service", "intentions"]),
        ((API, WEB), "shop", ["'shop' is not a service", "api, web"]),
        ((API, Service("web", "web", upstreams=("db",))), "web", ["'db' is not another service"]),
    ],
)
def test_a_graph_the_migration_cannot_serve_is_refused_naming_the_services(services, exposed, words):
    with pytest.raises(FleetError) as err:
        check_graph(Fleet(services, exposed))
    for word in words:
        assert word in str(err.value)


def test_the_demo_and_a_chain_are_served():
    check_graph(DEMO)
    check_graph(CHAIN)


# --- derived: the Mesh --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "closed"),
    [({"api": H, "web": H}, True), ({"api": V, "web": H}, False), ({"api": H, "web": V}, False)],
)
def test_the_mesh_closes_exactly_when_every_service_is_hardened(target, closed):
    assert mesh_closed(target) is closed
    entry = entries.mesh(Step(target))
    assert entry.mesh_destinations_only is closed
    assert entry.allow_enabling_permissive_mutual_tls is not closed


# --- chains -------------------------------------------------------------------------------------


def uris(fleet: Fleet, target: dict[str, Phase]) -> dict[str, str]:
    return {w.name: ",".join(w.upstream_uris) for w in workloads(fleet, target) if w.service.upstreams}


def test_in_a_chain_the_legacy_version_dials_service_dns_and_the_mesh_version_switches_at_virtual():
    at = {"payments": P, "orders": P, "web": D}
    assert uris(CHAIN, at) == {
        "orders-v1": "http://payments.service.consul:9091",
        "orders-v2": "http://payments.service.consul:9091",  # payments may still be outside the mesh
        "web-v1": "http://orders.service.consul:9091",
    }
    at = {"payments": S, "orders": V, "web": V}
    assert uris(CHAIN, at) == {
        "orders-v2": "http://payments.virtual.consul:9091",
        "web-v2": "http://orders.virtual.consul:9091",
    }


def test_a_mesh_version_on_service_dns_waits_for_its_upstreams_service_defaults():
    by_name = {w.name: w for w in workloads(CHAIN, {"payments": S, "orders": S, "web": S})}
    assert by_name["orders-v2"].waits_for_upstream_defaults == ("payments",)
    assert by_name["web-v1"].waits_for_upstream_defaults == ("orders",)
    virtual = {w.name: w for w in workloads(CHAIN, {"payments": S, "orders": V, "web": V})}
    assert virtual["orders-v2"].waits_for_upstream_defaults == ()

"""Whether a step's pods fit the node group (migration/capacity.py). Pure model tests: no Pulumi."""

from __future__ import annotations

import pytest

from migration.capacity import Adopted, Fit, fleet_pods, max_pods, per_node
from migration.fleet import AddressVariable, Fleet, Service
from migration.fleet import Adopted as Workload
from migration.phases import Phase
from migration.step import Step

D, P, S, V, H = Phase

DEMO = Fleet((Service("api", "api", migrates=True), Service("web", "web", upstreams=("api",))), "web")


@pytest.mark.parametrize(
    ("instance_type", "pods"),
    # amazon-vpc-cni-k8s misc/eni-max-pods.txt, the first column: ENIs x (IPv4 per ENI - 1) + 2.
    [("t3.small", 11), ("t3a.small", 8), ("t3.medium", 17), ("t3.large", 35), ("m5.large", 29), ("m5.xlarge", 58)],
)
def test_pods_per_node_follow_the_vpc_cni_formula(instance_type, pods):
    assert max_pods(instance_type) == pods


def test_a_node_group_of_several_types_holds_what_its_smallest_does_less_its_daemonsets():
    assert per_node(["t3.large", "t3.medium"]) == 17 - 4
    assert per_node(["t3.medium", "c7g.metal"]) is None  # a type whose limit is not known: no figure


def test_the_demo_runs_both_versions_of_a_migrating_service_during_its_permissive_up():
    """api-v1, api-v2, web-v1, and the one pod a roll adds."""
    assert fleet_pods(DEMO, Step({"api": P, "web": P}, {"api": D, "web": D}), {}) == 4
    assert fleet_pods(DEMO, Step({"api": S, "web": S}, {"api": S, "web": S}), {}) == 3


def adopted(name: str, **kw: object) -> Service:
    return Service(name, "shop", port=80, workload=Workload("Deployment", name), **kw)  # type: ignore[arg-type]


TEAM = Fleet(
    (
        adopted("orders", migrates=True),
        adopted("web", upstreams=("orders",), addresses=(AddressVariable("orders", "ORDERS_ADDR"),)),
    ),
    "web",
)
LIVE = {"orders": Adopted(replicas=4, surge=1), "web": Adopted(replicas=3, surge=1)}


def test_an_adopted_workload_counts_its_own_replicas_and_its_surge_while_it_rolls():
    assert fleet_pods(TEAM, Step({"orders": D, "web": D}, {"orders": D, "web": D}), LIVE) == 7
    assert fleet_pods(TEAM, Step({"orders": P, "web": P}, {"orders": D, "web": D}), LIVE) == 8  # orders rolls in
    assert fleet_pods(TEAM, Step({"orders": S, "web": V}, {"orders": S, "web": S}), LIVE) == 8  # web's variable
    assert fleet_pods(TEAM, Step({"orders": P, "web": P}, {"orders": D, "web": D}), {}) == 0  # not read: offline


def test_a_step_fits_the_nodes_it_has_and_says_how_many_it_needs():
    f = Fit(pods=27, per_node=13, nodes=2)
    assert (f.fits, f.needed) == (False, 3)
    assert Fit(pods=26, per_node=13, nodes=2).fits

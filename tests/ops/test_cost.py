"""The hourly cost estimate: what a stack renders, priced from the dated table in ops/cost.py."""

from __future__ import annotations

import dataclasses

import pytest

from ops.cost import INSTANCE_TYPES, PRICES, PRICES_AS_OF, hourly_cost, summary
from program.config import ON_DEMAND_INSTANCE_TYPES, SPOT_INSTANCE_TYPES

DEMO = {"cluster": {"capacityType": "SPOT", "protect": False}}  # ops/demo.py --like dev, on Spot
# Fixed parts of every default EKS stack: control plane, one NAT gateway, the API gateway's NLB with
# 0.1 NLCU, three public IPv4 addresses (the NAT gateway's and the NLB's in two public subnets),
# the Consul server's 10 GB volume.
FIXED = 0.10 + 0.045 + (0.0225 + 0.1 * 0.006) + 3 * 0.005 + 10 * 0.08 / 730
NODE_VOLUMES = 2 * 30 * 0.08 / 730
# Consul's snapshots: 24 PUTs a day, 168 snapshots of ~1 MB kept 7 days in S3 (components/snapshots.py).
FIXED += 0.005 / 1000 + 168 * 0.001 * 0.023 / 730


def logs(nodes: int = 2) -> float:
    """Control-plane logs (api, audit, authenticator) ~0.024 GB/h kept 30 days, flow logs ~0.001 GB/h a
    node kept 7 days: ingestion, and what is stored at any time."""
    return 0.024 * (0.50 + 24 * 30 * 0.03 / 730) + nodes * 0.001 * (0.50 + 24 * 7 * 0.03 / 730)


# With Spot nodes the Consul server gets an on-demand t3.small of its own (never on Spot), with its volume.
SERVER_NODE = 0.0208 + 30 * 0.08 / 730


def parts(run) -> dict[str, float | None]:
    _, lines = hourly_cost(run)
    return {line.what: line.hourly for line in lines}


@pytest.mark.parametrize(
    ("config", "nodes", "total"),
    [
        ({}, ("2 x t3.medium on-demand", 2 * 0.0416), FIXED + NODE_VOLUMES + logs() + 2 * 0.0416),
        (
            DEMO,
            ("2 x t3.medium/t3a.medium spot", 2 * 0.0165),
            FIXED + NODE_VOLUMES + logs(3) + 2 * 0.0165 + SERVER_NODE,
        ),
        (
            {"cluster": {"instanceTypes": ["t3.large"], "desiredSize": 3, "maxSize": 5}},  # the old default
            ("3 x t3.large on-demand", 3 * 0.0832),
            FIXED + 1.5 * NODE_VOLUMES + logs(3) + 3 * 0.0832,
        ),
        (  # On-Demand launches the first type; Spot may launch any, so the dearest is priced
            {"cluster": {"instanceTypes": ["m5.large", "t3.medium"]}},
            ("2 x m5.large on-demand", 2 * 0.096),
            FIXED + NODE_VOLUMES + logs() + 2 * 0.096,
        ),
        (
            {"cluster": {"capacityType": "SPOT", "instanceTypes": ["m5.large", "m6i.large"]}},
            ("2 x m5.large/m6i.large spot", 2 * 0.045),
            FIXED + NODE_VOLUMES + logs(3) + 2 * 0.045 + SERVER_NODE,
        ),
    ],
    ids=["dev", "demo", "old-default", "on-demand-first-type", "spot-dearest-type"],
)
def test_the_nodes_are_priced_by_count_type_and_capacity_type(program, config, nodes, total):
    run = program(config)
    assert run.error is None, run.error
    label, price = nodes
    assert parts(run)[label] == pytest.approx(price)
    assert hourly_cost(run)[0] == pytest.approx(total, abs=1e-5)


def test_a_demo_costs_at_most_27_cents_an_hour_with_its_consul_server_off_spot(program):
    """$0.237 until the servers left Spot (issue 21: a Spot interruption took the only server, and its
    zonal volume, with it); the on-demand t3.small for the server adds $0.024."""
    total, lines = hourly_cost(program(DEMO))
    assert total <= 0.27
    assert parts(program(DEMO))["1 x t3.small on-demand for the Consul servers"] == pytest.approx(0.0208)
    assert all(line.hourly is not None for line in lines)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"network": {"azCount": 3, "natGateways": "perAz"}}, {"NAT gateway x 3": 0.135, "public IPv4 x 6": 0.03}),
        (  # the UI's internet-facing NLB and the mesh gateway's internal one
            {"consul": {"ui": {"exposure": "public", "allowedCidrs": ["203.0.113.0/24"]}, "meshGateways": True}},
            {"NLB x 3 (2 internet-facing)": 3 * 0.0231, "public IPv4 x 5": 0.025},
        ),
        ({"gateway": {"scheme": "internal"}}, {"NLB x 1 (0 internet-facing)": 0.0231, "public IPv4 x 1": 0.005}),
        (
            {"cluster": {"desiredSize": 3}, "consul": {"serverReplicas": 3}},
            {"Consul volumes 30 GB gp3": 30 * 0.08 / 730, "node volumes 3 x 30 GB gp3": 90 * 0.08 / 730},
        ),
        (
            {"cluster": {"logTypes": ["audit"], "logRetentionDays": 90}},
            {"control-plane logs (audit) kept 90 days": 0.02 * (0.5 + 24 * 90 * 0.03 / 730)},
        ),
        (  # four a day kept 30 days: 120 snapshots of ~1 MB in S3, and the PUTs
            {"consul": {"snapshots": {"schedule": "0 */6 * * *", "retentionDays": 30}}},
            {"Consul snapshots (4 a day, kept 30 days)": 4 / 24 * 0.005 / 1000 + 120 * 0.001 * 0.023 / 730},
        ),
    ],
    ids=[
        "nat-per-zone",
        "ui-and-mesh-gateway-nlbs",
        "internal-gateway",
        "three-servers",
        "audit-log-only",
        "snapshots",
    ],
)
def test_what_the_stack_renders_is_what_is_priced(program, config, expected):
    run = program(config)
    assert run.error is None, run.error
    found = parts(run)
    for what, price in expected.items():
        assert found[what] == pytest.approx(price)


# The control-plane logs cannot be turned off: `cluster.logTypes` keeps audit (program/config.py,
# as the policy pack requires), so only the flow logs can cost nothing.
@pytest.mark.parametrize(("config", "absent"), [({"network": {"flowLogs": False}}, "flow logs")])
def test_logs_turned_off_cost_nothing(program, config, absent):
    run = program(config)
    assert run.error is None, run.error
    assert not [what for what in parts(run) if what.startswith(absent)]


def test_an_unknown_instance_type_or_region_is_named_not_guessed(program):
    dev = program({})
    nodes = next(r for r in dev.resources if r.type == "eks:index:ManagedNodeGroup")
    odd = dataclasses.replace(nodes, inputs={**nodes.inputs, "instanceTypes": ["x9.huge"]})
    run = dataclasses.replace(dev, resources=[odd if r is nodes else r for r in dev.resources])
    total, lines = hourly_cost(run)
    assert "no price for x9.huge on-demand (2 nodes)" in [str(line) for line in lines]
    assert total == pytest.approx(hourly_cost(dev)[0] - 2 * 0.0416)
    assert summary(run).startswith("estimated cost: at least $")

    elsewhere = dataclasses.replace(dev, config={**dev.config, "aws:region": "eu-west-1"})
    total, lines = hourly_cost(elsewhere)
    assert (total, [str(line) for line in lines]) == (0.0, ["no price for region eu-west-1"])
    assert summary(elsewhere) == "estimated cost: unknown (no price for region eu-west-1)"


def test_the_summary_line_gives_total_region_date_and_every_part(program):
    line = summary(program({}))
    assert line.startswith(
        f"estimated cost: $0.29/h (us-west-2 prices of {PRICES_AS_OF}): 2 x t3.medium on-demand $0.0832, "
    )
    assert "control plane $0.1000" in line and "NAT gateway x 1 $0.0450" in line and "flow logs ~$0." in line


def test_platform_kubernetes_costs_nothing_on_aws(program):
    run = program({}, stack="local")
    assert hourly_cost(run) == (0.0, [])
    assert summary(run) == "estimated cost: no AWS resources"


def test_every_default_instance_type_has_a_price_and_spot_defaults_are_one_size():
    prices = PRICES["us-west-2"]
    assert set(ON_DEMAND_INSTANCE_TYPES) <= set(prices.on_demand)
    assert set(SPOT_INSTANCE_TYPES) <= set(prices.spot)
    assert len(SPOT_INSTANCE_TYPES) >= 2
    assert len({INSTANCE_TYPES[t] for t in SPOT_INSTANCE_TYPES}) == 1  # same vCPU, memory and pod limit
    assert {t: INSTANCE_TYPES[t].max_pods for t in SPOT_INSTANCE_TYPES} == {"t3.medium": 17, "t3a.medium": 17}
    assert all(prices.spot[t] < prices.on_demand[t] for t in prices.spot)

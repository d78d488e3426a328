"""Upgrades, one step at a time (issue 21 items 9 and 13): what an `up` does when a pin moves, and what it refuses.

EKS updates a control plane one minor at a time, never back, and only once the managed nodes run
its version (EKS User Guide, update-cluster); the VPC CNI add-on also moves one minor at a time
(eks-add-ons). Consul's servers cannot go back to an older release once they wrote its Raft state.
Each `up` records the pins it ran (`versions`), and the next one may move each by one step.
"""

from __future__ import annotations

import pytest

from ops.plan import diff
from program.versions import CONSUL_CHART, KUBERNETES, VPC_CNI_ADDON

BUMP = {"versions": {"kubernetes": "1.36", "kubeProxyAddon": "v1.36.0-eksbuild.1"}}


@pytest.fixture(scope="module")
def deployed(program):
    run = program({})
    assert run.error is None, run.error
    return run


def test_each_up_records_the_pins_the_next_may_move_from(deployed, program):
    assert deployed.outputs["versions"] == {
        "kubernetes": KUBERNETES,
        "vpcCniAddon": VPC_CNI_ADDON,
        "consulChart": CONSUL_CHART,
    }
    assert program({}, stack="local").outputs["versions"] == {"consulChart": CONSUL_CHART}  # the cluster is not ours


def test_a_kubernetes_bump_moves_the_control_plane_and_every_node_group_and_replaces_nothing(deployed, program):
    """The preview of `versions.kubernetes` 1.35 -> 1.36, as `make plan` diffs it. Before, the node
    group was left out (pulumi-eks createManagedNodeGroup sets no version when a launch template is
    given), so the nodes stayed on 1.35 and the next bump failed at EKS."""
    bumped = program(BUMP, deployed=deployed.outputs)
    assert bumped.error is None, bumped.error
    changes = {(c.action, c.kind, c.name): c.details for c in diff(deployed, bumped)}
    assert {(a, k, n) for a, k, n in changes if a != "update"} == set()  # nothing created, deleted or replaced
    assert changes[("update", "Cluster", "cluster-eks")] == (
        'kubeProxyAddonOptions.version: "v1.35.3-eksbuild.2" -> "v1.36.0-eksbuild.1"',
        'version: "1.35" -> "1.36"',
    )
    assert changes[("update", "ManagedNodeGroup", "cluster-nodes")] == ('version: "1.35" -> "1.36"',)
    assert bumped.outputs["versions"]["kubernetes"] == "1.36"


@pytest.mark.parametrize(
    ("versions", "words"),
    [
        (
            {"kubernetes": "1.37", "kubeProxyAddon": "v1.37.0-eksbuild.1"},
            ["versions.kubernetes 1.37 skips from the deployed 1.35", "one minor, to 1.36"],
        ),
        (
            {"kubernetes": "1.34", "kubeProxyAddon": "v1.34.6-eksbuild.2"},
            ["versions.kubernetes 1.34 is older than the deployed 1.35", "cannot be downgraded"],
        ),
        (
            {"kubernetes": "1.36", "kubeProxyAddon": "v1.36.0-eksbuild.1", "consulChart": "2.1.0"},
            ["versions.consulChart", "versions.kubernetes", "separate ups", "the Consul chart first"],
        ),
        ({"vpcCniAddon": "v1.23.0-eksbuild.1"}, ["versions.vpcCniAddon v1.23.0-eksbuild.1 skips", "to 1.22"]),
        ({"consulChart": "1.9.1"}, ["versions.consulChart 1.9.1 is older than the deployed 2.0.3"]),
    ],
    ids=["kubernetes-skip", "kubernetes-downgrade", "kubernetes-and-chart", "vpc-cni-skip", "chart-downgrade"],
)
def test_a_skip_a_downgrade_or_two_upgrades_at_once_are_refused_before_anything_changes(
    deployed, program, versions, words
):
    """The control plane, the node groups, the VPC CNI add-on and the Consul release take their versions
    from the version gate (program/gate.py), so a refused step registers none of them."""
    run = program({"versions": versions}, deployed=deployed.outputs)
    assert run.error is not None
    assert run.error.startswith("ConfigError: config consul-mesh-migration:versions.")
    for word in words:
        assert word in run.error
    assert not run.of_type("eks:index:Cluster")
    assert not [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name == "consul-release"]


def test_a_stack_deployed_before_the_pins_were_recorded_is_not_held(program):
    run = program(BUMP, deployed={"phase": "discovery"})
    assert run.error is None, run.error

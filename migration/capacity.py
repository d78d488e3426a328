"""Whether a step's pods fit the node group: pods per node on the VPC CNI's ENI limit.

    pods a node takes    ENIs x (IPv4 addresses per ENI - 1) + 2        (amazon-vpc-cni-k8s
                         misc/eni-max-pods.txt: "First IP on each ENI is not used for pods",
                         "+2 for the pods that use host-networking"), less the DaemonSets' pods
    pods a step needs    the platform's pods + every version that runs during the `up` (both
                         sides of it) + the surge of the rolls it starts (a demo Deployment's one
                         pod; an adopted Deployment's resolved maxSurge; a StatefulSet replaces in place)

A step whose pods do not fit is refused: the pods over the limit stay Pending, and the `up` waits
for a rollout that cannot finish. One that fits with no node to spare is warned about (a node lost,
or a Spot node reclaimed, would leave pods Pending). No cluster autoscaler runs: `desiredSize` nodes
run. Only pods are counted: the team's own CPU and memory requests are theirs to size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .fleet import Fleet
from .phases import Phase, versions
from .step import Step

# (ENIs, IPv4 addresses per ENI) of the instance types the program prices (ops/cost.py), and their
# small and xlarge neighbours; from EC2's DescribeInstanceTypes as misc/eni-max-pods.txt derives it.
ENI_LIMITS: Mapping[str, tuple[int, int]] = {
    "t3.small": (3, 4),
    "t3a.small": (2, 4),
    "t3.medium": (3, 6),
    "t3a.medium": (3, 6),
    "t3.large": (3, 12),
    "t3a.large": (3, 12),
    "t3.xlarge": (4, 15),
    "t3a.xlarge": (4, 15),
    "m5.large": (3, 10),
    "m6i.large": (3, 10),
    "m5.xlarge": (4, 15),
    "m6i.xlarge": (4, 15),
}
# aws-node, kube-proxy, ebs-csi-node and consul-cni run on every node (program/config.py sizing note).
DAEMONSET_PODS = 4


def max_pods(instance_type: str) -> int | None:
    """The kubelet's pod limit on an EKS node of this type (VPC CNI, no prefix delegation); None: unknown."""
    limits = ENI_LIMITS.get(instance_type)
    if limits is None:
        return None
    enis, addresses = limits
    return enis * (addresses - 1) + 2


def per_node(instance_types: Sequence[str]) -> int | None:
    """Pods a node of the group holds besides its DaemonSets: the smallest type's (Spot may pick any)."""
    limits = [max_pods(t) for t in instance_types]
    if not limits or any(m is None for m in limits):
        return None
    return min(m for m in limits if m is not None) - DAEMONSET_PODS


@dataclass(frozen=True)
class Adopted:
    """What the live workload says of its pods: how many, and how many a roll adds at once."""

    replicas: int
    surge: int


def fleet_pods(fleet: Fleet, step: Step, adopted: Mapping[str, Adopted]) -> int:
    """The fleet's pods at the peak of this `up`. An adopted service missing from `adopted` (not read:
    offline) counts none."""
    total = 0
    rolls = 0
    for s in fleet.services:
        running = step.running(s.name)
        if s.adopted:
            live = adopted.get(s.name)
            if live is None:
                continue
            total += live.replicas
            if step.before(s.name) is None:  # not patched yet: it runs as the team runs it (discovery's state)
                running = [*running, Phase.DISCOVERY]
            states = {v for p in running for v in versions(p, s.migrates, adopted=True)}
            # Across virtual a caller's address variables change, and the pods of one in the mesh from
            # the start take what they reach without the sidecar (migration/adoption.py keeps_direct).
            crosses = (bool(s.addresses) or not s.migrates) and len({p >= Phase.VIRTUAL for p in running}) > 1
            if len(states) > 1 or crosses:
                total += live.surge  # adopted workloads roll in parallel: every surge at once
            continue
        alive = {v for p in running for v in versions(p, s.migrates)}
        total += len(alive) * s.replicas
        rolls = 1  # a demo Deployment that rolls (its template changed) adds one pod (maxSurge 1)
    return total + rolls


@dataclass(frozen=True)
class Fit:
    pods: int  # what the step needs, the platform's included
    per_node: int  # what one node holds besides its DaemonSets
    nodes: int  # the node group's desiredSize

    @property
    def needed(self) -> int:
        """Nodes the step needs (at least one)."""
        return max(1, -(-self.pods // self.per_node))

    @property
    def fits(self) -> bool:
        return self.pods <= self.nodes * self.per_node

    @property
    def spare(self) -> bool:
        """Still fits with one node fewer (a lost or reclaimed node leaves nothing Pending)."""
        return self.pods <= (self.nodes - 1) * self.per_node

"""Whether a step's pods fit the stack's node group (migration/capacity.py), with the figures.

The platform's own pods, counted once per cluster (the sizing note in program/config.py): the Consul
servers (on the node group unless Spot gives them nodes of their own), the connect injectors, the
injector's webhook-cert-manager, catalog sync, the API gateway's pods, CoreDNS, and on eks the load
balancer controller and the EBS CSI controller; with `verify.enabled`, the two check Jobs.
"""

from __future__ import annotations

from collections.abc import Mapping

from components.consul_values import GATEWAY_REPLICAS, INJECTOR_REPLICAS
from migration.capacity import Adopted, Fit, fleet_pods, per_node
from migration.phases import Phase
from migration.step import Step

from .config import StackConfig

COREDNS_PODS = 2  # the EKS add-on's and kubeadm's default replicas
EKS_CONTROLLERS_PODS = 2 + 2  # the LB controller chart's replicaCount 2, the EBS CSI controller's 2
CHECK_PODS = 2  # the precheck's and the postcheck's Jobs


def platform_pods(cfg: StackConfig) -> int:
    servers = 0 if cfg.cluster.capacity_type == "SPOT" else cfg.consul.server_replicas
    checks = CHECK_PODS if cfg.verify.enabled else 0
    once = servers + INJECTOR_REPLICAS + 1 + 1 + GATEWAY_REPLICAS + COREDNS_PODS + checks
    return once + (EKS_CONTROLLERS_PODS if cfg.platform == "eks" else 0)


def fit(cfg: StackConfig, step: Step, adopted: Mapping[str, Adopted] | None = None) -> Fit | None:
    """The step's pods against the node group; None where the nodes are not the program's (platform
    kubernetes) or a type's pod limit is not known."""
    if cfg.platform != "eks":
        return None
    room = per_node(cfg.cluster.instance_types)
    if room is None:
        return None
    pods = platform_pods(cfg) + fleet_pods(cfg.fleet(), step, adopted or {})
    return Fit(pods, room, cfg.cluster.desired_size)


def describe(cfg: StackConfig, f: Fit) -> str:
    types = "/".join(cfg.cluster.instance_types)
    return (
        f"{f.pods} pods at the peak of this `up` (the platform's {platform_pods(cfg)} included) need "
        f"{f.needed} x {types} ({f.per_node} pods each besides its DaemonSets); cluster.desiredSize is {f.nodes}"
    )


def peak(cfg: StackConfig, waves: list[dict[str, Phase]], start: Mapping[str, Phase]) -> Fit | None:
    """The step with the most pods along a rollout (waves from `start`), for `make plan`."""
    fits = []
    before: Mapping[str, Phase] = start
    for target in [dict(start), *waves]:
        f = fit(cfg, Step(target, before))
        if f is not None:
            fits.append(f)
        before = target
    return max(fits, key=lambda f: f.pods, default=None)


def note(cfg: StackConfig, f: Fit | None) -> str:
    """What `make plan` prints beside the cost: the nodes the rollout's busiest step needs."""
    if f is None:
        return ""
    adopted = [s.name for s in cfg.services if s.workload is not None]
    live = f"; adopted workloads' pods ({', '.join(adopted)}) are read and counted at preview" if adopted else ""
    return (
        f"; nodes: the busiest step needs {f.needed} x {'/'.join(cfg.cluster.instance_types)} for {f.pods} pods "
        f"(desiredSize {f.nodes}){live}"
    )

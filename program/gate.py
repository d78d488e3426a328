"""The phase gate: the requested phases, once the guard has compared them with what the stack deployed,
and, for a team's own workloads, once what runs on the cluster can join the mesh.

The stack reads its own outputs through a StackReference (the phases it deployed, the exceptions it
left on, the seals of its last `up`), and migration/guard.py and migration/fleet.py decide. The live
objects of adopted workloads (read by components/adoption.py at preview and at up) are judged by
migration/adoption.py. Every migration object waits for the gate's Output, so a refused step
changes none of them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Mapping
from typing import Any, cast

import pulumi

from migration.adoption import Live, step_problems, surge
from migration.capacity import Adopted
from migration.fleet import FleetError
from migration.guard import (
    VERSIONS_OUTPUT,
    PhaseJumpError,
    VersionStepError,
    check_moves,
    check_versions,
    read_deployed,
)
from migration.outside import never_through_the_mesh
from migration.step import Step, check_step

from . import sizing
from .config import PROJECT, ConfigError, StackConfig


def evaluate(cfg: StackConfig, outputs: dict[str, Any]) -> Step:
    """The guard's decision for `cfg` given the stack's deployed outputs; raises ConfigError."""
    fleet, target = cfg.fleet(), cfg.target()
    deployed = read_deployed(outputs, fleet.names)
    try:
        warnings = check_moves(deployed, target, cfg.allow_phase_jump)
    except PhaseJumpError as e:
        keys = sorted({cfg.phase_key(n) for n in e.services or target})
        raise ConfigError(f"config {PROJECT}:{', '.join(keys)}: {e}") from None
    step = Step(target=target, deployed=deployed.phases, deployed_dialed_directly=deployed.dialed_directly)
    try:
        warnings += check_step(fleet, step)
    except FleetError as e:
        if not cfg.allow_phase_jump:
            raise ConfigError(cfg.describe(e, by_phase=True)) from None
        # Forced: what the target alone forbids was refused with the config; what remains is the
        # transition, which the operator takes on.
        warnings += [f"allowPhaseJump: {p.text}" for p in e.problems]
    check_capacity(cfg, step)
    for warning in warnings:
        pulumi.log.warn(warning)
    return step


def check_capacity(cfg: StackConfig, step: Step, adopted: Mapping[str, Adopted] | None = None) -> None:
    """Refuse a step whose pods cannot all run on the node group (migration/capacity.py)."""
    fit = sizing.fit(cfg, step, adopted)
    if fit is not None and not fit.fits:
        raise ConfigError(
            f"config {PROJECT}:cluster.desiredSize: {sizing.describe(cfg, fit)}: the pods over the limit would "
            f"stay Pending and the `up` would wait for them; allowed: a desiredSize of at least {fit.needed}, or a "
            "larger instance type"
        )


def deployed_outputs() -> pulumi.Output[dict[str, Any]]:
    """What the stack's last `up` exported, read through a StackReference to itself (secret: it holds
    the kubeconfig; the gates' decisions hold only phases and versions)."""
    ref = pulumi.StackReference(
        "deployed", stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    )
    return ref.outputs.apply(lambda outputs: dict(outputs or {}))


def phase_gate(cfg: StackConfig, deployed: pulumi.Output[dict[str, Any]]) -> pulumi.Output[Step]:
    return pulumi.Output.unsecret(deployed.apply(lambda outputs: evaluate(cfg, outputs)))


def pins(cfg: StackConfig) -> dict[str, str]:
    """The versions that move one step at a time (migration/guard.py check_versions), as recorded."""
    v = cfg.versions
    eks = {"kubernetes": v.kubernetes, "vpcCniAddon": v.vpc_cni_addon} if cfg.platform == "eks" else {}
    return {**eks, "consulChart": v.consul_chart}


def check_pins(cfg: StackConfig, outputs: Mapping[str, Any]) -> dict[str, str]:
    """The pins of `cfg` once compared with the deployed ones; ConfigError for a skip, a downgrade, or
    Kubernetes and the chart together."""
    try:
        check_versions(outputs.get(VERSIONS_OUTPUT), pins(cfg))
    except VersionStepError as e:
        raise ConfigError(f"config {PROJECT}:{', '.join(e.keys)}: {e}") from None
    return pins(cfg)


def version_gate(cfg: StackConfig, deployed: pulumi.Output[dict[str, Any]]) -> pulumi.Output[dict[str, str]]:
    """The versions the control plane, the node groups, the VPC CNI and the Consul release are given:
    a refused step fails this Output, so none of them is updated (they wait for it like the migration
    objects wait for the phase gate)."""
    return pulumi.Output.unsecret(deployed.apply(lambda outputs: check_pins(cfg, outputs)))


def judge_live(cfg: StackConfig, step: Step, lives: Mapping[str, Live]) -> Step:
    """`step` once every adopted workload can join the mesh as it runs; ConfigError otherwise, one
    line per problem under the service's `workload` key."""
    fleet = cfg.fleet()
    adopted = [s.name for s in fleet.services if s.adopted]
    unread = [n for n in adopted if n not in lives]
    if unread:  # offline (make plan): no cluster to read
        pulumi.log.info(f"not read here (no cluster): {', '.join(unread)}; what runs is checked at preview and up")
    direct = never_through_the_mesh(str(cfg.cluster.service_cidr))
    problems = step_problems(fleet, step.target, {n: step.running(n) for n in fleet.names}, lives, direct)
    if problems:
        raise ConfigError(cfg.describe(FleetError(problems)))
    check_capacity(cfg, step, {n: Adopted(live.workload.replicas, surge(live.workload)) for n, live in lives.items()})
    return step


def live_gate(
    cfg: StackConfig, step: pulumi.Output[Step], lives: pulumi.Output[dict[str, Live]]
) -> pulumi.Output[Step]:
    """The phase gate, then the live verdict: what every migration object waits for. The verdict holds
    phases only, not the secret pod templates it was made from.

    It waits for every read, but does not carry them as dependencies: each object that waits for the
    gate would otherwise depend on every read of the fleet (hundreds of objects times hundreds of
    reads). Waiting is what matters: an object registers only once its inputs resolved, and a refused
    verdict fails the program before any migration object is registered.
    """
    verdict = pulumi.Output.all(step, lives).apply(lambda v: judge_live(cfg, v[0], v[1]))
    plain = pulumi.Output.unsecret(verdict)
    value = cast("Awaitable[Step]", plain.future(with_unknowns=True))
    # Scheduled now and never failing: awaited after the value, which may raise (a refused step).
    known = asyncio.ensure_future(_quietly(plain.is_known(), False))
    secret = asyncio.ensure_future(_quietly(plain.is_secret(), False))
    return pulumi.Output(set(), value, known, secret)


async def _quietly(awaitable: Awaitable[bool], default: bool) -> bool:
    try:
        return await awaitable
    except Exception:
        return default


def check_patch_force() -> None:
    """pulumi-kubernetes forces every server-side apply while PULUMI_K8S_ENABLE_PATCH_FORCE is true and
    the provider does not say otherwise (provider.go Configure, await.go patchForce): a patch of a
    team's workload would then take fields its owner manages. Refused before any resource."""
    if os.environ.get("PULUMI_K8S_ENABLE_PATCH_FORCE", "").lower() == "true":
        raise ConfigError(
            "environment PULUMI_K8S_ENABLE_PATCH_FORCE=true would make every patch of a team's workload take the "
            "fields its owner manages; unset it (the program never forces a patch)"
        )

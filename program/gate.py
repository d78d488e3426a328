"""The phase gate: the requested phases, once the guard has compared them with what the stack deployed.

The stack reads its own outputs through a StackReference (the phases it deployed, the exceptions it
left on, the seals of its last `up`), and migration/guard.py and migration/fleet.py decide. Every
migration object waits for the gate's Output, so a refused step changes none of them.
"""

from __future__ import annotations

from typing import Any

import pulumi

from migration.fleet import FleetError
from migration.guard import PhaseJumpError, check_moves, read_deployed
from migration.step import Step, check_step

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
    for warning in warnings:
        pulumi.log.warn(warning)
    return step


def phase_gate(cfg: StackConfig) -> pulumi.Output[Step]:
    ref = pulumi.StackReference(
        "deployed", stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    )
    # The outputs map is secret because it holds the kubeconfig; the decision holds only phases.
    return pulumi.Output.unsecret(ref.outputs.apply(lambda outputs: evaluate(cfg, dict(outputs or {}))))

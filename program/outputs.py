"""The migration's stack outputs, assembled in one place: what the step recorded and how to check it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from migration.fleet import Fleet
from migration.guard import VERSIONS_OUTPUT, seal_key
from migration.phases import Phase, fleet_phase, mesh_closed, versions
from migration.plan import plan
from migration.step import Step
from migration.workloads import exposed_names, upstream_names

from .config import StackConfig
from .gate import pins


def record(
    cfg: StackConfig, step: pulumi.Output[Step], done: Sequence[pulumi.CustomResource], outputs: dict[str, Any]
) -> None:
    """`phase`, `phases` and the seal, written only once every object of the step is in place.

    Pulumi deletes the retired versions after these are written; the seal tells the next `up`
    whether that finished (migration/guard.py).
    """
    phases = cfg.target()
    fleet = cfg.fleet()
    complete = pulumi.Output.all(step, *[r.id for r in done]).apply(lambda values: values[0])
    outputs["phase"] = complete.apply(lambda _: fleet_phase(phases).value)
    outputs["phases"] = complete.apply(lambda _: {n: p.value for n, p in phases.items()})
    outputs["nextPhase"] = cfg.phase.next.value if cfg.phase.next else None
    # What the next `up` may move from, one step at a time (program/gate.py version_gate).
    outputs[VERSIONS_OUTPUT] = complete.apply(lambda _: pins(cfg))
    outputs[seal_key(phases)] = complete.apply(
        lambda st: {"phases": {n: p.value for n, p in phases.items()}, "retires": retires(fleet, st)}
    )
    if cfg.phase is Phase.HARDENED and not mesh_closed(phases):
        held = ", ".join(f"{n}={p.value}" for n, p in phases.items() if p is not Phase.HARDENED)
        pulumi.log.warn(f"phase is hardened but {held} held back: the Mesh stays open until every service is hardened")


def retires(fleet: Fleet, step: Step) -> list[str]:
    """The Deployments (namespace/name) this step deletes at the end of the `up`; an adopted workload
    is never deleted (its versions are states of one pod template)."""
    if step.deployed is None:
        return []
    out = []
    for s in fleet.services:
        before = step.before(s.name)
        if before is None or s.adopted:
            continue
        gone = set(versions(before, s.migrates)) - set(versions(step.target[s.name], s.migrates))
        out += [f"{s.namespace}/{s.name}-{v}" for v in sorted(gone)]
    return out


def verify(cfg: StackConfig, url: str, stack: str) -> dict[str, object]:
    """The stack output `verify`: the checks that say this step is done and the next may start."""
    fleet, phases = cfg.fleet(), cfg.target()
    # fake-service answers JSON; upstream_calls nests one level per hop.
    names = "jq -r '.. | .upstream_calls? // empty | .[] | .name'"
    rollout = plan(fleet, phases)
    waves = rollout.waves
    if not waves and rollout.blocked:
        nxt = "blocked: " + "; ".join(rollout.blocked)
    elif not waves:
        nxt = "done: the migration is complete"
    elif len(set(waves[0].values())) == 1:
        nxt = f"make up STACK={stack} PHASE={next(iter(waves[0].values())).value}"
    else:
        nxt = " && ".join([*cfg.config_commands(waves[0], stack), f"make up STACK={stack}"])
    return {
        "curl": f"for i in $(seq 20); do curl -s {url}; done | {names} | sort | uniq -c",
        "expectUpstreams": upstream_names(fleet, phases),
        "expectService": exposed_names(fleet, phases),
        "configEntries": "kubectl get servicedefaults,serviceintentions,proxydefaults,mesh -A",
        "next": nxt,
    }

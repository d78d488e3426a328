"""The guard: each service moves at most one phase per `pulumi up`, from a step that completed.

The stack reads what it deployed through a StackReference to itself (program/gate.py) and hands the
outputs here. What the outputs say, and how far they can be trusted:

- `phases` (service -> phase) is written only once every object of the step is in place, synced
  to Consul and checked; stacks deployed before the fleet existed report one `phase` for all.
- Pulumi deletes the versions a step retires after the program has finished, so a deletion can
  fail after the outputs were written. Pulumi (3.112 and later, pulumi/pulumi#15754) then still
  writes the outputs the program exported, but removes the outputs it stopped exporting only when
  the whole `up` succeeded. So each `up` exports a seal named after the phases it selects
  (`seal-<hash>`, see `seal_key`): a stack that shows two seals did not finish its last `up`. Until
  it does, the guard allows only re-running that step (Pulumi retries what is left to delete) or
  going back to the step before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .phases import PHASE_NAMES, Phase

SEAL_PREFIX = "seal-"


def seal_key(target: Mapping[str, Phase]) -> str:
    """The output this `up` exports once it is done: one name per set of phases."""
    canonical = json.dumps({n: p.value for n, p in sorted(target.items())}, separators=(",", ":"))
    return SEAL_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:10]


class PhaseJumpError(Exception):
    """A requested phase more than one step from the deployed one, or a step from an unfinished `up`.

    `services`: the services whose phase the user must change (empty: the fleet as a whole).
    """

    def __init__(self, message: str, services: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.services = list(services)


@dataclass(frozen=True)
class Deployed:
    """What the stack's last `up` left, read from its outputs."""

    phases: dict[str, Phase] | None  # None: a fresh stack
    dialed_directly: frozenset[str] | None  # None: not recorded
    unfinished_from: dict[str, Phase] | None = None  # set when the last `up` did not finish
    unknown: tuple[str, ...] = ()  # deployed phase values this program does not know


def _phase_map(value: Any) -> tuple[dict[str, Phase], list[str]]:
    phases: dict[str, Phase] = {}
    unknown: list[str] = []
    for name, text in dict(value).items():
        if text in PHASE_NAMES:
            phases[str(name)] = Phase(text)
        else:
            unknown.append(f"{name}={text!r}")
    return phases, unknown


def read_deployed(outputs: Mapping[str, Any] | None, services: Sequence[str]) -> Deployed:
    """The deployed state from the stack's own outputs (empty or None on a fresh stack)."""
    outputs = dict(outputs or {})
    unknown: list[str] = []
    phases: dict[str, Phase] | None = None
    if isinstance(outputs.get("phases"), Mapping):
        phases, unknown = _phase_map(outputs["phases"])
    elif isinstance(outputs.get("phase"), str) and outputs["phase"]:
        # Deployed before the fleet: one phase for every service.
        phases, unknown = _phase_map(dict.fromkeys(services, outputs["phase"]))
    dd = outputs.get("dialedDirectly")
    dialed = frozenset(str(n) for n in dd) if isinstance(dd, list | tuple) else None

    seals = [
        _phase_map(v.get("phases", {}))[0]
        for k, v in outputs.items()
        if k.startswith(SEAL_PREFIX) and isinstance(v, Mapping)
    ]
    if len(seals) < 2:
        return Deployed(phases, dialed, None, tuple(unknown))
    # Two seals: the last `up` exported one, and the complete step before it left the other.
    before = next((p for p in seals if p != phases), seals[0])
    return Deployed(phases, dialed, before, tuple(unknown))


def allowed(deployed: Phase) -> list[Phase]:
    """The phases one `pulumi up` may select for a service when `deployed` is live."""
    return [p for p in (deployed.previous, deployed, deployed.next) if p is not None]


def _show(phases: Mapping[str, Phase]) -> str:
    values = set(phases.values())
    if len(values) == 1:
        return f"every service at {next(iter(values)).value}"
    return ", ".join(f"{n}={p.value}" for n, p in phases.items())


def check_moves(deployed: Deployed, target: Mapping[str, Phase], allow_jump: bool = False) -> list[str]:
    """Warnings for a forced step; PhaseJumpError for a refused one. One line per service."""
    if deployed.unknown:
        what = ", ".join(deployed.unknown)
        if allow_jump:
            return [f"deployed phases {what} are unknown; allowPhaseJump lets the step go ahead"]
        raise PhaseJumpError(
            f"the stack reports deployed phases this program does not know ({what}); set "
            "consul-mesh-migration:allowPhaseJump true to go ahead anyway"
        )
    if deployed.phases is None:
        return []
    if deployed.unfinished_from is not None:
        last, before = deployed.phases, deployed.unfinished_from
        relevant = {n: p for n, p in target.items() if n in last}
        if relevant in (
            {n: p for n, p in last.items() if n in target},
            {n: p for n, p in before.items() if n in target},
        ):
            return []
        message = (
            f"the last `pulumi up` ({_show(before)} -> {_show(last)}) did not finish: Pulumi still has versions to "
            f"delete. Re-run it with the same phases so Pulumi retries, or go back to {_show(before)}"
        )
        if allow_jump:
            return [f"allowPhaseJump: going ahead although {message[0].lower()}{message[1:]}"]
        raise PhaseJumpError(message + "; or set consul-mesh-migration:allowPhaseJump true to force it.")

    jumps: dict[tuple[Phase, Phase], list[str]] = {}
    for name, requested in target.items():
        live = deployed.phases.get(name)
        if live is not None and requested not in allowed(live):  # a service new to the stack may start anywhere
            jumps.setdefault((live, requested), []).append(name)
    problems: list[str] = []
    warnings: list[str] = []
    for (live, requested), names in jumps.items():
        who = ", ".join(repr(n) for n in names)
        options = ", ".join(p.value for p in allowed(live))
        if allow_jump:
            warnings.append(
                f"allowPhaseJump: moving {who} from {live.value!r} straight to {requested.value!r} "
                f"(normally one of {options})"
            )
        else:
            problems.append(
                f"{who}: phase {requested.value!r} is {abs(requested.index - live.index)} steps from the deployed "
                f"phase {live.value!r}; one `pulumi up` may select: {options}"
            )
    if problems:
        raise PhaseJumpError(
            "\n".join(problems)
            + "\nAdvance one phase at a time, or set consul-mesh-migration:allowPhaseJump true to force it.",
            [n for names in jumps.values() for n in names],
        )
    return warnings

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


# --- versions: one step at a time, in the documented order ---------------------------------------------

VERSIONS_OUTPUT = "versions"  # {kubernetes, vpcCniAddon, consulChart}: what the last complete `up` ran


class VersionStepError(Exception):
    """A requested version more than one step from the deployed one, backwards, or moving with another."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = list(keys)


def _minor(version: str) -> tuple[int, int]:
    """(major, minor) of 1.35, 2.0.3 or v1.21.1-eksbuild.8."""
    major, minor = version.lstrip("v").split("-")[0].split(".")[:2]
    return int(major), int(minor)


# What each pin may do in one `up`, and why (the source that says so).
_RULES = {
    # EKS User Guide, update-cluster: "you can update only one minor version at a time"; "Once you
    # upgrade a cluster, you can't downgrade". The node groups follow in the same `up`.
    "kubernetes": ("versions.kubernetes", True),
    # EKS User Guide, eks-add-ons (VPC CNI): "You can only update one minor version at a time".
    "vpcCniAddon": ("versions.vpcCniAddon", False),
    # Consul's upgrade docs: servers first, then the rest; a newer Raft state cannot be read by an older
    # server, so no way back but a snapshot restore.
    "consulChart": ("versions.consulChart", True),
}


def check_versions(deployed: Mapping[str, Any] | None, requested: Mapping[str, str]) -> None:
    """VersionStepError unless each pin moves at most one minor (a new major only from its
    predecessor), never back where a downgrade is impossible, and Kubernetes and the Consul chart
    never in the same `up`. `deployed` is the `versions` output; stacks without it are not checked."""
    if not isinstance(deployed, Mapping):
        return
    problems: list[str] = []
    moved: list[str] = []
    for name, wanted in requested.items():
        live = deployed.get(name)
        if not isinstance(live, str) or live == wanted:
            continue
        key, no_downgrade = _RULES[name]
        (live_major, live_minor), (major, minor) = _minor(live), _minor(wanted)
        if (major, minor) != (live_major, live_minor):
            moved.append(name)
        if (major, minor) < (live_major, live_minor) and no_downgrade:
            problems.append(f"{key} {wanted} is older than the deployed {live}, which cannot be downgraded")
        elif major > live_major + 1 or (major == live_major and minor > live_minor + 1):
            step = f"{live_major}.{live_minor + 1}" if major == live_major else f"{live_major + 1}.x"
            problems.append(f"{key} {wanted} skips from the deployed {live}; one `up` may move it one minor, to {step}")
    if {"kubernetes", "consulChart"} <= set(moved):
        problems.append(
            "versions.kubernetes and versions.consulChart both change; upgrade them in separate ups, the Consul "
            "chart first when the new Kubernetes minor is outside its supported range, Kubernetes first otherwise"
        )
    if problems:
        keys = sorted({_RULES[n][0] for n in requested if n in moved} or {_RULES[n][0] for n in requested})
        raise VersionStepError("; ".join(problems), keys)

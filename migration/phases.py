"""The five phases, and what each means for one service's two sides.

A service has an inbound side (how it accepts callers) and an outbound side (how its mesh version
addresses its upstreams). Only a *migrating* service (`migrates: true`, the demo's `api`) has an
inbound journey: it starts outside the mesh as `<name>-v1`, known to Consul through catalog sync,
and moves in as `<name>-v2`. A service in the mesh from the start (the demo's `web`) is strict from
the start; its phases move its outbound side, and `hardened` drops its exceptions too.

| phase      | inbound (migrating)          | outbound (mesh version)    |
|------------|------------------------------|----------------------------|
| discovery  | outside the mesh             | `<up>.service.consul`      |
| permissive | mesh version accepts plain   | `<up>.service.consul`      |
| strict     | mTLS only, with exceptions   | `<up>.service.consul`      |
| virtual    | mTLS only, with exceptions   | `<up>.virtual.consul`      |
| hardened   | mTLS only, no exceptions     | `<up>.virtual.consul`      |

The one exception is `dialedDirectly`: callers that still dial the pod IPs `.service.consul` returns
keep reaching a strict service through it (see `step.dialed_directly`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Literal


class Phase(enum.Enum):
    """Ordered migration phases; each `pulumi up` moves a service at most one step."""

    DISCOVERY = "discovery"
    PERMISSIVE = "permissive"
    STRICT = "strict"
    VIRTUAL = "virtual"
    HARDENED = "hardened"

    # Identity hashing: Enum's own __hash__ hashes the name, which the planner pays for per move.
    __hash__ = object.__hash__

    @property
    def index(self) -> int:
        return _INDEX[self]

    @property
    def next(self) -> Phase | None:
        return _ORDER[self.index + 1] if self.index + 1 < len(_ORDER) else None

    @property
    def previous(self) -> Phase | None:
        return _ORDER[self.index - 1] if self.index > 0 else None

    def __lt__(self, other: Phase) -> bool:
        return self.index < other.index

    def __le__(self, other: Phase) -> bool:
        return self.index <= other.index

    def __gt__(self, other: Phase) -> bool:
        return self.index > other.index

    def __ge__(self, other: Phase) -> bool:
        return self.index >= other.index


_ORDER: list[Phase] = list(Phase)
_INDEX: dict[Phase, int] = {p: i for i, p in enumerate(_ORDER)}
PHASE_NAMES: tuple[str, ...] = tuple(p.value for p in Phase)
DISCOVERY, PERMISSIVE, STRICT, VIRTUAL, HARDENED = _ORDER

Inbound = Literal["outside", "permissive", "strict", "hardened"]
Dns = Literal["service", "virtual"]
Version = Literal["v1", "v2"]
Phases = Mapping[str, Phase]  # service name -> its phase: what a step deploys or selects


def inbound(phase: Phase, migrates: bool) -> Inbound:
    """How the service accepts callers: `strict` allows the dialedDirectly exception, `hardened` none."""
    if phase is HARDENED:
        return "hardened"
    if not migrates or phase >= STRICT:
        return "strict"
    return "outside" if phase is DISCOVERY else "permissive"


def refuses_plain_text(phase: Phase, migrates: bool) -> bool:
    return inbound(phase, migrates) in ("strict", "hardened")


def versions(phase: Phase, migrates: bool, adopted: bool = False) -> tuple[Version, ...]:
    """The versions of a service that run in `phase`.

    A demo service's versions are Deployments: a migrating one runs its legacy v1 until strict and
    its mesh v2 from permissive; one in the mesh from the start runs v1 (service DNS) until virtual,
    then v2 (virtual addresses). An adopted service (a team's own Deployment or StatefulSet) has one
    pod template, and its versions are that template's states: v1 as the team runs it, v2 with what
    the phase adds (the sidecar, then the virtual address). A rolling update replaces one by the
    other, so v1 and v2 run side by side only during the `up` that rolls it (a step runs both sides).
    """
    if adopted and migrates:
        return ("v1",) if phase is DISCOVERY else ("v2",)
    if migrates:
        legacy: tuple[Version, ...] = ("v1",) if phase <= PERMISSIVE else ()
        return legacy + (("v2",) if phase >= PERMISSIVE else ())
    return ("v1",) if phase < VIRTUAL else ("v2",)


def legacy_gone(migrates: bool, adopted: bool = False) -> Phase:
    """The first phase from which no version runs outside the mesh, in that phase and every later one."""
    return next(
        p
        for p in _ORDER
        if all(in_mesh(v, migrates) for q in _ORDER[p.index :] for v in versions(q, migrates, adopted))
    )


def in_mesh(version: Version, migrates: bool) -> bool:
    """Only a migrating service's v1 runs outside the mesh."""
    return not (migrates and version == "v1")


def upstream_dns(phase: Phase, version: Version, migrates: bool) -> Dns:
    """How this version addresses its upstreams: a legacy or pre-virtual version by service DNS."""
    if version == "v1":
        return "service"
    return "virtual" if phase >= VIRTUAL or not migrates else "service"


def describe(phases: Phases) -> str:
    """`strict` when every service is there, else `api=strict, web=virtual`."""
    values = set(phases.values())
    if len(values) == 1:
        return next(iter(values)).value
    return ", ".join(f"{n}={p.value}" for n, p in phases.items())


def fleet_phase(target: Phases) -> Phase:
    """The fleet's least advanced phase: what the stack reports as `phase`."""
    return min(target.values(), default=DISCOVERY)


def mesh_closed(target: Phases) -> bool:
    """The Mesh entry forbids permissive mode and non-mesh destinations once every service is hardened."""
    return all(p is HARDENED for p in target.values())

"""The planner: the fewest `pulumi up`s (waves) that take every service to hardened, or as far as
the callers outside the mesh let it.

Each wave moves each service at most one phase, and every wave must pass `step.check_step`. The
rules only ever ask that some service *has already reached* a phase before another moves, so every
move has an earliest wave (a longest path over "x at least one wave after y" edges), and moving
every service as early as it may gives the fewest waves.

Among the plans with that many waves, the planner prefers the race-free order: a migrating
service goes strict only after every caller already addresses it through its virtual address,
so no plain-text caller meets the strict flip (see fleet.FLIP_WINDOW). It takes that order for
each service where it costs no extra wave.

A caller outside the mesh that speaks plain text never moves, so the service it calls stops at
permissive; what that service calls then cannot drop its exceptions while it dials them through
`.service.consul`. `ceilings` derives how far each service may go and why; the plan stops there and
its `blocked` lines name the outside caller and what would unblock it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .fleet import Fleet
from .phases import HARDENED, PERMISSIVE, STRICT, VIRTUAL, Phase, Phases
from .step import Step, flip_window

Move = tuple[str, Phase]  # service reaches phase
Edge = tuple[Move, Move]  # (later, earlier): later happens at least one wave after earlier


@dataclass(frozen=True)
class Plan:
    waves: list[dict[str, Phase]]  # the target phases of each `pulumi up`, in order
    windows: list[list[str]]  # per wave, the known flip windows it still has (fleet warnings)
    blocked: tuple[str, ...] = ()  # per service that cannot reach hardened: where it stops and why


def ceilings(fleet: Fleet) -> dict[str, tuple[Phase, str]]:
    """The services that cannot reach hardened: the last phase each may reach, and why (one line)."""
    out: dict[str, tuple[Phase, str]] = {}
    for s in fleet.services:
        plain = [o for o in fleet.outside_callers(s.name) if o.plain_text]
        if s.migrates and plain:
            o = plain[0]
            out[s.name] = (
                PERMISSIVE,
                f"{o.name!r} ({o.kind}, outside the mesh) calls it in plain text; {o.unblock(s.name)}",
            )
    changed = True
    while changed:  # a fixpoint over the step rules that read another service's phase
        changed = False
        for s in fleet.services:
            for c in fleet.callers(s.name):
                cap, _ = out.get(c, (HARDENED, ""))
                if cap < VIRTUAL:  # hardened: no caller left dialing it through service DNS
                    changed |= _lower(
                        out, s.name, VIRTUAL, f"{c!r} stops at {cap.value} and dials {s.name}.service.consul"
                    )
                caller = fleet.service(c)
                if s.migrates and caller.migrates and cap < caller.legacy_gone:  # plain text: c outside the mesh stays
                    legacy = f"{c}'s pods without a sidecar keep" if caller.adopted else f"{c}-v1 keeps"
                    changed |= _lower(out, s.name, PERMISSIVE, f"{c!r} stops at {cap.value}, so {legacy} running")
    return out


def _lower(out: dict[str, tuple[Phase, str]], name: str, cap: Phase, why: str) -> bool:
    if name in out and out[name][0] <= cap:
        return False
    out[name] = (cap, why)
    return True


def _moves(fleet: Fleet, start: Phases, caps: Mapping[str, tuple[Phase, str]]) -> list[Move]:
    return [
        (s.name, p) for s in fleet.services for p in Phase if start[s.name] < p <= caps.get(s.name, (HARDENED, ""))[0]
    ]


def _hard_edges(fleet: Fleet, todo: set[Move]) -> list[Edge]:
    edges: list[Edge] = []

    def need(later: Move, earlier: Move) -> None:
        if later in todo and earlier in todo:
            edges.append((later, earlier))

    for s in fleet.services:
        steps = [p for p in Phase if (s.name, p) in todo]
        for a, b in itertools.pairwise(steps):
            need((s.name, b), (s.name, a))
        for c in fleet.callers(s.name):
            caller = fleet.service(c)
            if s.migrates and caller.migrates:  # plain text: the caller's pods outside the mesh are gone first
                need((s.name, STRICT), (c, caller.legacy_gone))
            need((s.name, HARDENED), (c, VIRTUAL))  # hardened: no caller left on service DNS
        for up in s.upstreams:
            if fleet.service(up).migrates:  # virtual: the upstream has a mesh version first
                need((s.name, VIRTUAL), (up, PERMISSIVE))
    return edges


def _race_free_edges(fleet: Fleet, todo: set[Move], name: str) -> list[Edge]:
    if (name, STRICT) not in todo:
        return []
    return [((name, STRICT), (c, VIRTUAL)) for c in fleet.callers(name) if (c, VIRTUAL) in todo]


def _earliest(moves: list[Move], edges: Iterable[Edge]) -> dict[Move, int] | None:
    """Earliest wave of every move (1-based), or None when the edges form a cycle."""
    ids = {m: i for i, m in enumerate(moves)}
    after: list[list[int]] = [[] for _ in moves]
    indegree = [0] * len(moves)
    for later, earlier in edges:
        after[ids[earlier]].append(ids[later])
        indegree[ids[later]] += 1
    wave = [1] * len(moves)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for j in after[i]:
            wave[j] = max(wave[j], wave[i] + 1)
            indegree[j] -= 1
            if indegree[j] == 0:
                ready.append(j)
    return dict(zip(moves, wave, strict=True)) if done == len(moves) else None


def plan(fleet: Fleet, start: Phases) -> Plan:
    """Waves from `start` (the deployed phases) to every service hardened, or to its ceiling."""
    caps = ceilings(fleet)
    moves = _moves(fleet, start, caps)
    todo = set(moves)
    edges = _hard_edges(fleet, todo)
    wave = _earliest(moves, edges)
    if wave is None:  # check_graph refuses the graphs that would get here
        raise ValueError("the service graph has no order that reaches hardened")
    count = max(wave.values(), default=0)
    for s in fleet.services:
        extra = _race_free_edges(fleet, todo, s.name)
        if not extra:
            continue
        trial = _earliest(moves, [*edges, *extra])
        if trial is not None and max(trial.values(), default=0) <= count:
            edges, wave = [*edges, *extra], trial

    reached: dict[str, list[tuple[int, Phase]]] = {s.name: [] for s in fleet.services}
    for (name, phase), at in wave.items():
        reached[name].append((at, phase))
    waves: list[dict[str, Phase]] = []
    windows: list[list[str]] = []
    before = dict(start)
    for w in range(1, count + 1):
        target = {n: max([before[n], *(p for at, p in moves_of if at == w)]) for n, moves_of in reached.items()}
        step = Step(target=target, deployed=before)
        windows.append([line for n in target if target[n] != before[n] for line in flip_window(fleet, n, step)])
        waves.append(target)
        before = target
    blocked = tuple(f"{n!r} stops at {cap.value}: {why}" for n, (cap, why) in caps.items())
    return Plan(waves, windows, blocked)

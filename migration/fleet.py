"""The fleet: services, their call graph, each at its own phase, and what the graph allows.

A `Step` is one `pulumi up`: the phases deployed before it (None on a fresh stack) and the phases
it selects. Versions that leave in a step run until the end of that `up` (Pulumi deletes last), so
every rule below reads both sides of the step: what runs during the `up` is the union of the two.

The rules, each with the failure it prevents (refused before any resource is registered):
- plain text: a migrating service may refuse plain text (strict or later) only once no caller's
  legacy version runs outside the mesh, during this `up` included. Otherwise that caller's requests
  are reset by the service's sidecar until its legacy version is deleted.
- virtual: a caller may dial `<up>.virtual.consul` only once the upstream has a mesh version, before
  and after the step. A virtual address answers for mesh instances only: with none, every call fails.
- hardened: a service may drop its exceptions only once no mesh caller still addresses it through
  `.service.consul` (during this `up` included): those callers dial pod IPs, which a strict sidecar
  accepts only while `dialedDirectly` is on.
- static: a migrating service cannot call a service in the mesh from the start (its v1 runs outside
  the mesh and could never pass strict mTLS); migrating services cannot call each other in a cycle
  (neither could go strict while the other's v1 runs); the gateway's service is in the mesh from the
  start (the gateway reaches mesh instances only) and no service's upstream (the gateway owns its
  intentions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .phases import (
    DISCOVERY,
    HARDENED,
    PERMISSIVE,
    STRICT,
    VIRTUAL,
    Phase,
    in_mesh,
    inbound,
    refuses_plain_text,
    upstream_dns,
    versions,
)

Phases = Mapping[str, Phase]


@dataclass(frozen=True)
class Problem:
    """One thing the migration cannot serve: the service whose `setting` must change (None: the
    fleet, or the gateway for setting "gateway"), and one line naming the services involved."""

    service: str | None
    text: str
    setting: str = ""


class FleetError(ValueError):
    """A service graph or a step the migration cannot serve."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(p.text for p in self.problems))


@dataclass(frozen=True)
class Service:
    """One service of the fleet, as its team describes it."""

    name: str
    namespace: str
    port: int = 9091
    migrates: bool = False  # starts outside the mesh as <name>-v1 and moves in as <name>-v2
    upstreams: tuple[str, ...] = ()
    replicas: int = 1


@dataclass(frozen=True)
class Fleet:
    services: tuple[Service, ...]
    exposed: str  # the service the API gateway routes to
    _callers: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Service] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.services})
        callers: dict[str, list[str]] = {s.name: [] for s in self.services}
        for s in self.services:
            for up in s.upstreams:
                callers.setdefault(up, []).append(s.name)
        object.__setattr__(self, "_callers", {k: tuple(sorted(v)) for k, v in callers.items()})

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def service(self, name: str) -> Service:
        return self._by_name[name]

    def callers(self, name: str) -> tuple[str, ...]:
        return self._callers.get(name, ())


def check_graph(fleet: Fleet) -> None:
    """The static rules (see the module docstring); raises FleetError naming the services."""
    problems: list[Problem] = []
    names = fleet.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FleetError([Problem(None, f"service names must be unique; repeated: {', '.join(dupes)}")])
    for s in fleet.services:
        for up in s.upstreams:
            if up not in names or up == s.name:
                others = ", ".join(n for n in names if n != s.name) or "(none)"
                problems.append(Problem(s.name, f"{up!r} is not another service; allowed: {others}", "upstreams"))
            elif s.migrates and not fleet.service(up).migrates:
                problems.append(
                    Problem(
                        s.name,
                        f"{s.name!r} migrates, so its v1 runs outside the mesh and cannot call {up!r}, which is in the "
                        f"mesh from the start; make {up!r} migrate too, or drop the upstream",
                        "upstreams",
                    )
                )
            elif up == fleet.exposed:
                problems.append(
                    Problem(
                        s.name,
                        f"{s.name!r} calls {up!r}, the gateway's service, whose intentions belong to the gateway; "
                        "expose another service (gateway.service) or drop the upstream",
                        "upstreams",
                    )
                )
    if fleet.exposed not in names:
        problems.append(Problem(None, f"{fleet.exposed!r} is not a service; allowed: {', '.join(names)}", "gateway"))
    elif fleet.service(fleet.exposed).migrates:
        problems.append(
            Problem(
                None,
                f"the gateway's service {fleet.exposed!r} migrates: the gateway is in the mesh and reaches mesh "
                "instances only, so its v1 would get no traffic and discovery would serve 503s; expose a service "
                "that is in the mesh from the start",
                "gateway",
            )
        )
    if not problems and (cycle := _migrating_cycle(fleet)):
        problems.append(
            Problem(
                cycle[0],
                f"{' -> '.join(cycle)} call each other and all migrate: none could refuse plain text while the "
                "others' v1 run outside the mesh; break the cycle",
            )
        )
    if problems:
        raise FleetError(problems)


def _migrating_cycle(fleet: Fleet) -> list[str] | None:
    graph = {s.name: [u for u in s.upstreams if s.migrates and fleet.service(u).migrates] for s in fleet.services}
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for name in graph:
        if name not in state and (found := visit(name)):
            return found
    return None


# --- one step -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One `pulumi up`. `deployed` is None on a fresh stack; a service missing from it is new.

    `deployed_dialed_directly`: the services whose ServiceDefaults carried the dialedDirectly
    exception after the last `up` (None when the stack did not record it: fresh, or deployed by a
    version of this program that always set it for a migrating service at strict and virtual).
    """

    target: Phases
    deployed: Phases | None = None
    deployed_dialed_directly: frozenset[str] | None = None

    def before(self, name: str) -> Phase | None:
        return None if self.deployed is None else self.deployed.get(name)

    def running(self, name: str) -> list[Phase]:
        """The phases whose versions of `name` run during this `up`: before (until deleted) and after."""
        before = self.before(name)
        return [self.target[name]] + ([before] if before is not None and before != self.target[name] else [])


def dns_callers(fleet: Fleet, name: str, phases: Iterable[tuple[str, Phase]]) -> list[str]:
    """Callers with a mesh version that addresses `name` as `<name>.service.consul` in these phases."""
    out = []
    for caller, phase in phases:
        c = fleet.service(caller)
        if any(
            in_mesh(v, c.migrates) and upstream_dns(phase, v, c.migrates) == "service"
            for v in versions(phase, c.migrates)
        ):
            out.append(caller)
    return sorted(set(out))


def _callers_running(fleet: Fleet, step: Step, name: str) -> list[tuple[str, Phase]]:
    return [(c, p) for c in fleet.callers(name) for p in step.running(c)]


def _legacy_exceptions(fleet: Fleet, phases: Phases) -> frozenset[str]:
    """What earlier versions of this program set: dialedDirectly on every migrating service at strict or virtual."""
    return frozenset(s.name for s in fleet.services if s.migrates and phases.get(s.name) in (STRICT, VIRTUAL))


def dialed_directly(fleet: Fleet, step: Step, name: str) -> bool:
    """Whether `name`'s ServiceDefaults carries transparentProxy.dialedDirectly in this step.

    On only while the service is strict (with exceptions) and some mesh caller still dials the pod
    IPs that `.service.consul` returns, counting callers whose service-DNS version runs until the end
    of this `up`. Never while permissive: Consul's permissive filter chain matches the destination
    port only, so mTLS sent to the pod's port would reach the app raw. Once on, it stays while the
    service keeps its phase, so re-running an `up` changes nothing; it goes when the service moves on
    with no such caller left. A fresh stack assumes what earlier versions of this program deployed.
    """
    s = fleet.service(name)
    target = step.target[name]
    if inbound(target, s.migrates) != "strict":
        return False
    if dns_callers(fleet, name, _callers_running(fleet, step, name)):
        return True
    if step.deployed is None:
        return name in _legacy_exceptions(fleet, step.target)
    recorded = step.deployed_dialed_directly
    if recorded is None:
        recorded = _legacy_exceptions(fleet, step.deployed)
    return step.before(name) == target and name in recorded


def mesh_closed(target: Phases) -> bool:
    """The Mesh entry forbids permissive mode and non-mesh destinations once every service is hardened."""
    return all(p is HARDENED for p in target.values())


def check_step(fleet: Fleet, step: Step) -> list[str]:
    """Refuse (FleetError) a step the call graph does not allow; return warnings for known windows."""
    problems: list[Problem] = []
    warnings: list[str] = []
    for s in fleet.services:
        for caller in fleet.callers(s.name):
            c = fleet.service(caller)
            problems += _plain_text_rule(s, c, step)
            problems += _hardened_rule(fleet, s, c, step)
        problems += _virtual_rule(fleet, s, step)
        warnings += flip_window(fleet, s.name, step)
    if problems:
        raise FleetError(problems)
    return warnings


def _plain_text_rule(s: Service, c: Service, step: Step) -> list[Problem]:
    target = step.target[s.name]
    if not (s.migrates and c.migrates and refuses_plain_text(target, True)):
        return []
    legacy = [p for p in step.running(c.name) if p <= PERMISSIVE]
    if not legacy:
        return []
    during = " until the end of this `up`" if step.target[c.name] > PERMISSIVE else ""
    return [
        Problem(
            s.name,
            f"{s.name!r} cannot refuse plain text ({target.value}) while {c.name}-v1 runs outside the mesh{during} "
            f"({c.name!r} is at {legacy[-1].value}); move {c.name!r} to strict first, then {s.name!r}",
        )
    ]


def _virtual_rule(fleet: Fleet, c: Service, step: Step) -> list[Problem]:
    if step.target[c.name] < VIRTUAL:
        return []
    out: list[Problem] = []
    for up in c.upstreams:
        u = fleet.service(up)
        if not u.migrates:
            continue
        without = [p for p in step.running(up) if p < PERMISSIVE]
        if without:
            out.append(
                Problem(
                    c.name,
                    f"{c.name!r} cannot dial {up}.virtual.consul ({c.name!r} at {step.target[c.name].value}) while "
                    f"{up!r} has no mesh version ({up!r} at {without[0].value}); move {up!r} to permissive first",
                )
            )
    return out


def _hardened_rule(fleet: Fleet, s: Service, c: Service, step: Step) -> list[Problem]:
    if step.target[s.name] is not HARDENED:
        return []
    dialing = dns_callers(fleet, s.name, [(c.name, p) for p in step.running(c.name)])
    if not dialing:
        return []
    phase = step.running(c.name)[-1]
    return [
        Problem(
            s.name,
            f"{s.name!r} cannot drop its exceptions (hardened) while {c.name!r} still dials {s.name}.service.consul "
            f"({c.name!r} at {phase.value}{' until the end of this `up`' if step.target[c.name] >= VIRTUAL else ''}); "
            f"move {c.name!r} to virtual first, then {s.name!r}",
        )
    ]


FLIP_WINDOW = (
    "the mTLS mode and the dialedDirectly exception reach the sidecars of {name} and of its callers "
    "({callers}) in separate xDS pushes, so their calls to {name} can be refused for a moment (Consul "
    "coalesces a proxy's updates for 200 ms; the gap is the time between the two pushes, typically "
    "well under a second)"
)


def flip_window(fleet: Fleet, name: str, step: Step) -> list[str]:
    """The known window of a strict flip (either way) while mesh callers still use service DNS."""
    s = fleet.service(name)
    before = step.before(s.name)
    if before is None or not s.migrates:
        return []
    sides = {inbound(before, True), inbound(step.target[s.name], True)}
    if sides != {"permissive", "strict"}:
        return []
    callers = dns_callers(fleet, s.name, _callers_running(fleet, step, s.name))
    if not callers:
        return []
    names = ", ".join(callers)
    window = FLIP_WINDOW.format(callers=names, name=s.name)
    if step.target[s.name] is STRICT:
        return [
            f"{s.name!r} {before.value} -> strict: {window}. Race-free order: move {names} to virtual first "
            f"(calls then reach {s.name} through the mesh), then {s.name!r} to strict"
        ]
    return [
        f"{s.name!r} strict -> permissive (step back): {window}. Consul has no safe single step back while "
        f"{names} dial {s.name}.service.consul; the safe way back: move {names} to virtual first, then step "
        f"{s.name!r} back"
    ]


def describe(phases: Phases) -> str:
    """`strict` when every service is there, else `api=strict, web=virtual`."""
    values = set(phases.values())
    if len(values) == 1:
        return next(iter(values)).value
    return ", ".join(f"{n}={p.value}" for n, p in phases.items())


def fleet_phase(target: Phases) -> Phase:
    """The fleet's least advanced phase: what the stack reports as `phase`."""
    return min(target.values(), default=DISCOVERY)


__all__ = [
    "DISCOVERY",
    "HARDENED",
    "PERMISSIVE",
    "STRICT",
    "VIRTUAL",
    "Fleet",
    "FleetError",
    "Phases",
    "Problem",
    "Service",
    "Step",
    "check_graph",
    "check_step",
    "describe",
    "dialed_directly",
    "dns_callers",
    "fleet_phase",
    "flip_window",
    "mesh_closed",
]

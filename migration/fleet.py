"""The fleet: services and their call graph, and the static rules the graph must keep.

The rules, each with the failure it prevents (refused before any resource is registered): a migrating
service cannot call a service in the mesh from the start (its v1 runs outside the mesh and could
never pass strict mTLS); migrating services cannot call each other in a cycle (neither could go
strict while the other's v1 runs); the gateway's service is in the mesh from the start (the gateway
reaches mesh instances only) and no service's upstream (the gateway owns its intentions). Services
outside the mesh (`outside.py`) call and are called like the others, with rules of their own below
(`_outside_problems`). What a single `pulumi up` may do to this graph is `step.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .outside import UNBLOCK, Destination, Outside
from .phases import Phase, legacy_gone
from .protocols import GATEWAY_PROTOCOLS, Protocol


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


WorkloadKind = Literal["Deployment", "StatefulSet"]


@dataclass(frozen=True)
class Adopted:
    """A workload its team runs, in the service's namespace: the program never creates, replaces or
    deletes it, and changes only what the migration needs (`migration/adoption.py`)."""

    kind: WorkloadKind
    name: str


@dataclass(frozen=True)
class AddressVariable:
    """An environment variable of an adopted caller that holds an upstream's address. At `virtual` the
    program sets it to `value` with `{host}` = `<upstream>.virtual.consul` and `{port}` = the
    upstream's port; before, it leaves the variable to the team."""

    upstream: str
    env: str
    value: str = "{host}:{port}"

    def virtual(self, port: int) -> str:
        return self.value.format(host=f"{self.upstream}.virtual.consul", port=port)


@dataclass(frozen=True)
class Service:
    """One service of the fleet, as its team describes it.

    Without `workload` it is a demo service: the program runs it as fake-service Deployments
    (`<name>-v1`, `<name>-v2`) in a namespace of its own. With `workload` it is the team's own
    Deployment or StatefulSet in an existing namespace.
    """

    name: str
    namespace: str
    port: int = 9091
    migrates: bool = False  # starts outside the mesh (v1) and moves in (v2)
    upstreams: tuple[str, ...] = ()
    replicas: int = 1
    protocol: Protocol = "http"
    workload: Adopted | None = None
    addresses: tuple[AddressVariable, ...] = ()  # adopted callers only: variables the program sets
    destinations: tuple[Destination, ...] = ()  # what it calls outside the mesh (outside.py)

    @property
    def adopted(self) -> bool:
        return self.workload is not None

    @property
    def legacy_gone(self) -> Phase:
        """From this phase on no version of the service runs outside the mesh."""
        return legacy_gone(self.migrates, self.adopted)


@dataclass(frozen=True)
class Fleet:
    services: tuple[Service, ...]
    exposed: str  # the service the API gateway routes to
    outside: tuple[Outside, ...] = ()  # services outside the mesh and outside this program
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

    def outside_callers(self, name: str) -> tuple[Outside, ...]:
        """The outside services that call `name`, in config order."""
        return tuple(o for o in self.outside if name in o.upstreams)

    def destinations(self) -> dict[str, tuple[Destination, tuple[str, ...]]]:
        """Every destination by name, with the mesh services that call it (in config order)."""
        out: dict[str, tuple[Destination, tuple[str, ...]]] = {}
        for s in self.services:
            for d in s.destinations:
                _, callers = out.get(d.name, (d, ()))
                out[d.name] = (d, (*callers, s.name))
        return out


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
        for a in s.addresses:
            if a.upstream not in s.upstreams:
                text = f"{a.env} holds the address of {a.upstream!r}, which is not an upstream"
                problems.append(Problem(s.name, text, "upstreams"))
    if fleet.exposed not in names:
        problems.append(Problem(None, f"{fleet.exposed!r} is not a service; allowed: {', '.join(names)}", "gateway"))
    elif (protocol := fleet.service(fleet.exposed).protocol) not in GATEWAY_PROTOCOLS:
        problems.append(
            Problem(
                None,
                f"the gateway's service {fleet.exposed!r} speaks {protocol}: the API gateway routes HTTP to its "
                f"service; expose a service whose protocol is {' or '.join(GATEWAY_PROTOCOLS)}",
                "gateway",
            )
        )
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
    problems += _outside_problems(fleet)
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


def _outside_problems(fleet: Fleet) -> list[Problem]:
    """Outside services: unique names, calls only to mesh services, and no plain-text caller of a
    service that refuses plain text in every phase (one in the mesh from the start)."""
    problems: list[Problem] = []
    mesh = set(fleet.names)
    taken = [*fleet.names, *(o.name for o in fleet.outside)]
    for d in {d.name: d for s in fleet.services for d in s.destinations if d.registered_by_program}.values():
        taken.append(d.name)
    dupes = sorted({n for n in taken if taken.count(n) > 1})
    if dupes:
        return [Problem(None, f"service and destination names must be unique; repeated: {', '.join(dupes)}")]
    for o in fleet.outside:
        for up in o.upstreams:
            if up not in mesh:
                allowed = ", ".join(fleet.names) or "(none)"
                problems.append(
                    Problem(
                        o.name,
                        f"{o.name!r} is outside the mesh and calls {up!r}, which is not a service of the mesh; "
                        f"allowed: {allowed}",
                        "upstreams",
                    )
                )
            elif o.plain_text and not fleet.service(up).migrates:
                problems.append(
                    Problem(
                        o.name,
                        f"{o.name!r} ({o.kind}, outside the mesh) calls {up!r} in plain text, but {up!r} is in the "
                        f"mesh from the start and refuses plain text in every phase; "
                        f"{UNBLOCK[o.kind].format(name=o.name)}, or make {up!r} migrate (it accepts plain text until "
                        "strict)",
                        "upstreams",
                    )
                )
    return problems

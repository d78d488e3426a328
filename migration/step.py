"""One step: a `pulumi up` from the phases deployed to the phases selected, and what the graph allows.

A `Step` holds the phases deployed before it (None on a fresh stack) and the phases it selects.
Versions that leave in a step run until the end of that `up` (Pulumi deletes last), so every rule
below reads both sides of the step: what runs during the `up` is the union of the two.

The rules, each with the failure it prevents (`check_step` refuses before any resource is registered):
- plain text: a migrating service may refuse plain text (strict or later) only once no caller's
  legacy version runs outside the mesh, during this `up` included. Otherwise that caller's requests
  are reset by the service's sidecar until its legacy version is deleted.
- virtual: a caller may dial `<up>.virtual.consul` only while the upstream has a mesh version, for
  as long as any version of the caller that dials it runs (a leaving one until the end of the `up`).
  A virtual address answers for mesh instances only: with none, every call fails.
- hardened: a service may drop its exceptions only once no mesh caller still addresses it through
  `.service.consul` (during this `up` included): those callers dial pod IPs, which a strict sidecar
  accepts only while `dialedDirectly` is on (`dialed_directly`).
- outside callers: a service may refuse plain text only while no caller outside the mesh calls it in
  plain text (outside.py): that caller never moves, so every one of its requests would be reset.
Known windows that no rule can close are warnings (`flip_window`). The static rules of the graph
itself are in `fleet.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .fleet import Fleet, FleetError, Problem, Service
from .phases import (
    HARDENED,
    PERMISSIVE,
    STRICT,
    VIRTUAL,
    Phase,
    Phases,
    in_mesh,
    inbound,
    refuses_plain_text,
    upstream_dns,
    versions,
)


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
            for v in versions(phase, c.migrates, c.adopted)
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
        problems += _outside_caller_rule(fleet, s, step)
        warnings += flip_window(fleet, s.name, step)
    if problems:
        raise FleetError(problems)
    return warnings


def _plain_text_rule(s: Service, c: Service, step: Step) -> list[Problem]:
    target = step.target[s.name]
    if not (s.migrates and c.migrates and refuses_plain_text(target, True)):
        return []
    legacy = [p for p in step.running(c.name) if p < c.legacy_gone]
    if not legacy:
        return []
    outside = f"{c.name}'s pods without a sidecar run" if c.adopted else f"{c.name}-v1 runs"
    during = " until the end of this `up`" if step.target[c.name] >= c.legacy_gone else ""
    return [
        Problem(
            s.name,
            f"{s.name!r} cannot refuse plain text ({target.value}) while {outside} outside the mesh{during} "
            f"({c.name!r} is at {legacy[-1].value}); move {c.name!r} to {c.legacy_gone.value} first, then {s.name!r}",
        )
    ]


def dials_virtual(c: Service, phases: Iterable[Phase]) -> bool:
    """Whether a version of `c` running in one of these phases addresses its upstreams as `.virtual.consul`."""
    return any(upstream_dns(p, v, c.migrates) == "virtual" for p in phases for v in versions(p, c.migrates))


def _outside_caller_rule(fleet: Fleet, s: Service, step: Step) -> list[Problem]:
    target = step.target[s.name]
    if not (s.migrates and refuses_plain_text(target, True)):
        return []  # a service in the mesh from the start with such a caller is refused with the graph
    return [
        Problem(
            s.name,
            f"{s.name!r} cannot refuse plain text ({target.value}) while {o.name!r} ({o.kind}, outside the mesh) "
            f"calls it in plain text; {o.unblock(s.name)}",
        )
        for o in fleet.outside_callers(s.name)
        if o.plain_text
    ]


def _virtual_rule(fleet: Fleet, c: Service, step: Step) -> list[Problem]:
    """Over every version of the caller and of the upstream that runs during the `up`: a caller version
    leaving in this step dials its virtual addresses until Pulumi deletes it, and an upstream's mesh
    version leaving in it may be deleted first (unrelated deletes run in parallel)."""
    dialing = [p for p in step.running(c.name) if dials_virtual(c, [p])]
    if not dialing:
        return []
    out: list[Problem] = []
    for up in c.upstreams:
        u = fleet.service(up)
        if not u.migrates:
            continue
        without = [p for p in step.running(up) if p < PERMISSIVE]
        if without:
            during = "" if dialing[0] is step.target[c.name] else " until the end of this `up`"
            out.append(
                Problem(
                    c.name,
                    f"{c.name!r} cannot dial {up}.virtual.consul ({c.name!r} at {dialing[0].value}{during}) while "
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

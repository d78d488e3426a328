"""What a step's checks expect and look for, from the model: plain data that components/checks.py hands
to meshcheck/expectation.py, which builds the check script's document.

- postcheck: per service, the versions that run after the step and the versions the step retires.
  Pulumi deletes what a step retires only after every registered step, the postcheck Job included
  (pulumi pkg/resource/deploy/deployment_executor.go, performPostSteps), so a retiring version may
  still answer while the postcheck runs, or may already be draining: it is allowed, not required,
  and never probed. Every version that runs must answer, and every ready pod of it must refuse or
  accept plain text as its phase says. Whatever else answers fails the check: that is how a version
  retired by an earlier step that still answers is caught.
- precheck: the services the target makes refuse plain text (the script probes which of them still
  accept it, so which the step really tightens), whether their callers with a sidecar keep a path
  (`dialed_directly` over the versions that run before and during the `up`), the callers whose
  sidecars' statistics bound the plain text they may hold open, and, when the target closes the Mesh,
  the services whose sidecars must call nothing outside it.

A team's own workload (an adopted service) is checked by what every meshed workload has, from its
live objects (migration/adoption.py `Live`): its pods by its Service's own selector, probed in plain
text on the container port as its protocol speaks; its callers' sidecars, whose statistics for it are
read before and after the step (`upstream_checks`); the gateway's route where it is exposed, by its
success rate rather than fake-service's names. A service that was not read (offline) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .adoption import Live, target_port
from .fleet import Fleet, Service
from .phases import VIRTUAL, in_mesh, mesh_closed, refuses_plain_text, versions
from .protocols import Protocol, l7
from .step import Step, dialed_directly
from .workloads import Workload, reachable, selector, workloads


@dataclass(frozen=True)
class VersionCheck:
    """One Deployment of a service, as the checks see it."""

    name: str  # the Deployment: api-v2
    labels: dict[str, str]  # its pods' labels
    running: bool  # False: the step retires it
    accepts_plain_text: bool  # outside the mesh, or its service is permissive
    display_name: str  # fake-service's NAME: what a request through the gateway shows


@dataclass(frozen=True)
class ServiceCheck:
    name: str
    namespace: str
    port: int
    selector: dict[str, str]  # the Kubernetes Service's
    versions: tuple[VersionCheck, ...]
    protocol: Protocol = "http"


def _version(w: Workload, running: bool) -> VersionCheck:
    accepts = not w.in_mesh or not refuses_plain_text(w.phase, w.service.migrates)
    return VersionCheck(w.name, w.labels, running, accepts, w.display_name)


def live_selector(s: Service, lives: Mapping[str, Live]) -> dict[str, str] | None:
    """What the service's Kubernetes Service selects: the demo's own labels, or an adopted service's
    live selector (None: not read)."""
    if not s.adopted:
        return selector(s)
    live = lives.get(s.name)
    return dict(live.service.selector) if live else None


def _adopted_check(s: Service, step: Step, live: Live) -> ServiceCheck | None:
    cp = target_port(live, s.port)
    if cp is None or s.workload is None:
        return None
    phase = step.target[s.name]
    meshed = any(in_mesh(v, s.migrates) for v in versions(phase, s.migrates, adopted=True))
    accepts = not meshed or not refuses_plain_text(phase, s.migrates)
    labels = dict(live.service.selector)
    version = VersionCheck(s.workload.name, labels, True, accepts, "")
    return ServiceCheck(s.name, s.namespace, cp.container_port, labels, (version,), s.protocol)


def postcheck_services(fleet: Fleet, step: Step, lives: Mapping[str, Live] | None = None) -> list[ServiceCheck]:
    """Per service, in config order: the versions that run after the step, then those it retires; an
    adopted service's pods as one version (its pod template, rolled already: Pulumi awaited the roll)."""
    after = {w.name: w for w in workloads(fleet, step.target)}
    before: dict[str, Workload] = {}
    if step.deployed is not None:  # a service new to the stack had no versions before
        filled = {n: step.deployed.get(n, step.target[n]) for n in fleet.names}
        before = {w.name: w for w in workloads(fleet, filled) if w.service.name in step.deployed}
    out = []
    for s in fleet.services:
        if s.adopted:
            live = (lives or {}).get(s.name)
            check = _adopted_check(s, step, live) if live else None
            if check is not None:
                out.append(check)
            continue
        running = [_version(w, True) for w in after.values() if w.service.name == s.name]
        retiring = [_version(w, False) for n, w in before.items() if w.service.name == s.name and n not in after]
        out.append(ServiceCheck(s.name, s.namespace, s.port, selector(s), (*running, *retiring), s.protocol))
    return out


def reached(fleet: Fleet) -> list[str]:
    """The services a request through the gateway meets: the exposed one and its upstreams, at any
    depth, and the destinations outside the mesh the demo's services among them call. A team's own
    service shows no hops: through it, only itself."""
    if fleet.service(fleet.exposed).adopted:
        return [fleet.exposed]
    services = [fleet.exposed, *reachable(fleet, fleet.exposed)]
    outside = [d.name for n in services if not fleet.service(n).adopted for d in fleet.service(n).destinations]
    return [*services, *dict.fromkeys(d for d in outside if d not in services)]


def destinations(fleet: Fleet) -> dict[str, str | None]:
    """Every destination by name, with the host its callers dial by their own address (None: an outside
    service they reach at `<name>.service.consul`)."""
    return {name: d.host for name, (d, _) in fleet.destinations().items()}


@dataclass(frozen=True)
class CallerPods:
    """A service's pods, by what its Kubernetes Service selects."""

    name: str
    namespace: str
    selector: dict[str, str]


@dataclass(frozen=True)
class Tightened:
    name: str
    namespace: str
    port: int  # its pods' port
    selector: dict[str, str]
    # No caller with a sidecar keeps a path once it refuses plain text: no dialedDirectly while a
    # caller still dials its pod IPs, so such a caller's plain text would be refused too.
    count_mesh_callers: bool
    mesh_callers: tuple[CallerPods, ...]  # callers whose sidecars may hold plain text open to it
    # Its mTLS chain is an HTTP connection manager, so the sidecar's statistics count the permissive
    # chain's open connections apart (a tcp service's mTLS chain is a TCP proxy too).
    http: bool


@dataclass(frozen=True)
class PrecheckTarget:
    services: tuple[Tightened, ...]  # refuse plain text after the step
    outbound: tuple[CallerPods, ...]  # the step closes the Mesh: these sidecars must call nothing outside it


def _pods(s: Service, lives: Mapping[str, Live]) -> CallerPods | None:
    sel = live_selector(s, lives)
    return CallerPods(s.name, s.namespace, sel) if sel is not None else None


def _pods_port(s: Service, lives: Mapping[str, Live]) -> int | None:
    if not s.adopted:
        return s.port
    live = lives.get(s.name)
    cp = target_port(live, s.port) if live else None
    return cp.container_port if cp else None


def precheck_target(fleet: Fleet, step: Step, lives: Mapping[str, Live] | None = None) -> PrecheckTarget:
    """What a step may tighten.

    The services are the target's (which of them the step really tightens is found on the cluster:
    one that refuses plain text already is not read further) and `dialed_directly` is the same on a
    re-run of a step as on its first run (it stays on while the service keeps its phase), so the
    precheck's document, and its Job, is the same on every run of one step. An adopted service is read
    by its live selector and container port (left out when it was not read: offline).
    """
    lives = lives or {}
    services = []
    for s in fleet.services:
        port, pods = _pods_port(s, lives), _pods(s, lives)
        if port is None or pods is None or not refuses_plain_text(step.target[s.name], s.migrates):
            continue
        callers = tuple(p for c in fleet.callers(s.name) if (p := _pods(fleet.service(c), lives)) is not None)
        services.append(
            Tightened(
                s.name,
                s.namespace,
                port,
                pods.selector,
                not dialed_directly(fleet, step, s.name),
                callers,
                l7(s.protocol),
            )
        )
    every = [_pods(s, lives) for s in fleet.services]
    outbound = tuple(p for p in every if p is not None) if mesh_closed(step.target) else ()
    return PrecheckTarget(tuple(services), outbound)


@dataclass(frozen=True)
class UpstreamCheck:
    """An adopted service, proven by its callers' sidecars: their requests to it before and after the
    step, and none to its pod IPs from a caller whose pods dial its virtual address now."""

    name: str
    protocol: Protocol
    callers: tuple[CallerPods, ...]  # callers with a sidecar after the step
    moved: tuple[CallerPods, ...]  # adopted callers at virtual or later: one pod template, rolled already


def upstream_checks(fleet: Fleet, step: Step, lives: Mapping[str, Live]) -> list[UpstreamCheck]:
    out = []
    for s in fleet.services:
        if not s.adopted or s.name not in lives:
            continue
        callers, moved = [], []
        for name in fleet.callers(s.name):
            c = fleet.service(name)
            sel = live_selector(c, lives)
            phase = step.target[name]
            if sel is None or not any(in_mesh(v, c.migrates) for v in versions(phase, c.migrates, c.adopted)):
                continue
            pods = CallerPods(name, c.namespace, sel)
            callers.append(pods)
            if c.adopted and phase >= VIRTUAL:
                moved.append(pods)
        if callers:  # a service only the gateway calls is proven by the gateway's route
            out.append(UpstreamCheck(s.name, s.protocol, tuple(callers), tuple(moved)))
    return out

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

A team's own workload (an adopted service) is left to its own checks (issue 19): its pods carry the
team's labels, and it answers with no fake-service name; until they exist the config refuses
`verify.enabled` with one (program/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .fleet import Fleet, Service
from .phases import mesh_closed, refuses_plain_text
from .protocols import l7
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


def _version(w: Workload, running: bool) -> VersionCheck:
    accepts = not w.in_mesh or not refuses_plain_text(w.phase, w.service.migrates)
    return VersionCheck(w.name, w.labels, running, accepts, w.display_name)


def postcheck_services(fleet: Fleet, step: Step) -> list[ServiceCheck]:
    """Per service, in config order: the versions that run after the step, then those it retires."""
    after = {w.name: w for w in workloads(fleet, step.target)}
    before: dict[str, Workload] = {}
    if step.deployed is not None:  # a service new to the stack had no versions before
        filled = {n: step.deployed.get(n, step.target[n]) for n in fleet.names}
        before = {w.name: w for w in workloads(fleet, filled) if w.service.name in step.deployed}
    out = []
    for s in fleet.services:
        if s.adopted:
            continue
        running = [_version(w, True) for w in after.values() if w.service.name == s.name]
        retiring = [_version(w, False) for n, w in before.items() if w.service.name == s.name and n not in after]
        out.append(ServiceCheck(s.name, s.namespace, s.port, selector(s), (*running, *retiring)))
    return out


def reached(fleet: Fleet) -> list[str]:
    """The services a request through the gateway meets: the exposed one and its upstreams, at any
    depth, and the destinations outside the mesh the demo's services among them call."""
    services = [fleet.exposed, *reachable(fleet, fleet.exposed)]
    outside = [d.name for n in services if not fleet.service(n).adopted for d in fleet.service(n).destinations]
    return [*services, *dict.fromkeys(d for d in outside if d not in services)]


def destinations(fleet: Fleet) -> dict[str, str | None]:
    """Every destination by name, with the host its callers dial by their own address (None: an outside
    service they reach at `<name>.service.consul`)."""
    return {name: d.host for name, (d, _) in fleet.destinations().items()}


@dataclass(frozen=True)
class Tightened:
    name: str
    namespace: str
    port: int
    selector: dict[str, str]
    # No caller with a sidecar keeps a path once it refuses plain text: no dialedDirectly while a
    # caller still dials its pod IPs, so such a caller's plain text would be refused too.
    count_mesh_callers: bool
    mesh_callers: tuple[Service, ...]  # callers whose sidecars may hold plain text open to it
    # Its mTLS chain is an HTTP connection manager, so the sidecar's statistics count the permissive
    # chain's open connections apart (a tcp service's mTLS chain is a TCP proxy too).
    http: bool


@dataclass(frozen=True)
class PrecheckTarget:
    services: tuple[Tightened, ...]  # refuse plain text after the step
    outbound: tuple[Service, ...]  # the step closes the Mesh: these sidecars must call nothing outside it


def precheck_target(fleet: Fleet, step: Step) -> PrecheckTarget:
    """What a step may tighten.

    The services are the target's (which of them the step really tightens is found on the cluster:
    one that refuses plain text already is not read further) and `dialed_directly` is the same on a
    re-run of a step as on its first run (it stays on while the service keeps its phase), so the
    precheck's document, and its Job, is the same on every run of one step.
    """
    strict = [s for s in fleet.services if not s.adopted and refuses_plain_text(step.target[s.name], s.migrates)]
    services = tuple(
        Tightened(
            s.name,
            s.namespace,
            s.port,
            selector(s),
            not dialed_directly(fleet, step, s.name),
            tuple(fleet.service(c) for c in fleet.callers(s.name)),
            l7(s.protocol),
        )
        for s in strict
    )
    outbound = tuple(s for s in fleet.services if not s.adopted) if mesh_closed(step.target) else ()
    return PrecheckTarget(services, outbound)

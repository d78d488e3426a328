"""What a step's checks expect and look for, from the model: plain data for meshcheck/expectation.py.

- postcheck: every running version of every service, as its display name, and whether the service
  still accepts plain text after the step (outside the mesh, or permissive).
- precheck: the services the target makes refuse plain text (the script probes which of them still
  accept it, so which the step tightens), the services whose sidecars must call nothing outside the
  mesh when the target closes it, and those whose callers with a sidecar would be cut off too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .fleet import Fleet
from .phases import Phase, mesh_closed, refuses_plain_text
from .step import dns_callers
from .workloads import workloads


@dataclass(frozen=True)
class Running:
    """A service as it runs after the step."""

    name: str
    namespace: str
    port: int
    versions: dict[str, str]  # running version -> display name (fake-service NAME)
    upstreams: tuple[str, ...]
    accepts_plain_text: bool


def running(fleet: Fleet, target: Mapping[str, Phase]) -> list[Running]:
    by_service: dict[str, dict[str, str]] = {s.name: {} for s in fleet.services}
    for w in workloads(fleet, target):
        by_service[w.service.name][w.version] = w.display_name
    return [
        Running(
            s.name,
            s.namespace,
            s.port,
            by_service[s.name],
            s.upstreams,
            not refuses_plain_text(target[s.name], s.migrates),
        )
        for s in fleet.services
    ]


@dataclass(frozen=True)
class PrecheckTarget:
    services: tuple[str, ...]  # refuse plain text after the step: their callers are read if they still accept it
    count_mesh_callers: tuple[str, ...]  # of those, where a caller with a sidecar would be cut off too
    outbound: tuple[str, ...]  # the step closes the Mesh: these sidecars must call nothing outside it


def precheck_target(fleet: Fleet, target: Mapping[str, Phase]) -> PrecheckTarget:
    """What a step to `target` may tighten, from the target alone.

    Which of these the step really tightens is found on the cluster (a service that refuses plain
    text already is not probed further), so the precheck is the same on every run of one step. A
    caller with a sidecar is cut off when no mesh caller in the target dials the service through
    `.service.consul`: then nothing keeps dialedDirectly on for it, and its plain text is refused.
    """
    strict = [s.name for s in fleet.services if refuses_plain_text(target[s.name], s.migrates)]
    exposed = tuple(n for n in strict if not dns_callers(fleet, n, [(c, target[c]) for c in fleet.callers(n)]))
    outbound = tuple(fleet.names) if mesh_closed(target) else ()
    return PrecheckTarget(tuple(strict), exposed, outbound)

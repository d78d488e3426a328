"""What a step's checks expect and look for, from the model: plain data for checks/expectations.py.

- postcheck: every running version of every service, as its display name, and whether the service
  still accepts plain text after the step (outside the mesh, or permissive).
- precheck: the services a step tightens (they accepted plain text before it and refuse it after),
  or every service when the step closes the Mesh; and among them those whose callers with a sidecar
  would be cut off too (no dialedDirectly while such a caller may still dial the pod IPs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .fleet import Fleet, Step, dialed_directly, mesh_closed
from .phases import Phase, refuses_plain_text
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
class Precheck:
    services: tuple[str, ...]  # whose sidecars' access logs are read
    count_mesh_callers: tuple[str, ...]  # of those, where a caller with a sidecar is cut off too
    closes_mesh: bool


def precheck(fleet: Fleet, step: Step) -> Precheck | None:
    """What the step tightens, or None when it tightens nothing (a fresh stack tightens nothing:
    no caller can depend on what did not run)."""
    if step.deployed is None:
        return None
    closes = not mesh_closed(step.deployed) and mesh_closed(step.target)
    tightened = []
    for s in fleet.services:
        before = step.before(s.name)
        if before is None:
            continue
        if closes or (
            not refuses_plain_text(before, s.migrates) and refuses_plain_text(step.target[s.name], s.migrates)
        ):
            tightened.append(s.name)
    if not tightened:
        return None
    exposed = tuple(n for n in tightened if not dialed_directly(fleet, step, n))
    return Precheck(tuple(tightened), exposed, closes)

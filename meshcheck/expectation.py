"""What the check script (meshcheck/mesh_check.py) expects of a phase, built from plain data.

No Pulumi and nothing from program/ or components/: the caller describes the services as they run
after the step (and, for the precheck, as they ran before it) and gets the one JSON document the
script reads. `expectation()` checks the document with the script's own parser, so what is built
here is what the Job accepts.

The document (schema version 1; every duration in seconds):

    {
      "version": 1,
      "phase": "permissive",                        # printed before the summary line
      "postcheck": {
        "gateway": {
          "url": "http://api-gateway.consul.svc.cluster.local:80/",
          "requests": 20,                           # N requests, one fresh connection each
          "tolerance": 0.4,                         # k running versions: each >= 1/k - tolerance
          "exposed": "web",                         # the top level of each answer
          "names": {"api": ["api (mesh)", "api (non-mesh)"], "web": ["web (mesh)"]}
        },
        "plaintext": [                              # one probe list per service, from mesh-checks
          {"service": "api", "url": "http://api.api.svc.cluster.local:9091/", "expect": "accepted", "attempts": 3},
          {"service": "web", "url": "http://web.web.svc.cluster.local:9091/", "expect": "refused", "attempts": 3}
        ],
        "timeouts": {"request": 5, "plaintext": 2, "settle": 15, "total": 30}
      },
      "precheck": {                                 # only for a step that tightens plain-text access
        "step": "permissive -> strict",
        "window_seconds": 900,
        "services": [{"service": "api", "namespace": "api", "selector": "app=api"}],
        "signal": {"container": "consul-dataplane", "inbound_cluster": "local_app",
                   "ignore_namespaces": ["mesh-checks"], "count_mesh_callers": false,
                   "mesh_annotation": "consul.hashicorp.com/connect-inject-status"},
        "kubernetes": {"url": "https://kubernetes.default.svc",
                       "token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                       "ca_file": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"},
        "timeouts": {"request": 5, "total": 10}
      }
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import mesh_check

# The Job's image: stock Python, standard library only, pinned by tag and by the digest of that
# tag's multi-arch index (as pinned by several public projects; no registry is reachable from here
# to read it afresh: `docker buildx imagetools inspect python:3.13.14-alpine3.24` confirms it).
IMAGE = "python:3.13.14-alpine3.24@sha256:399babc8b49529dabfd9c922f2b5eea81d611e4512e3ed250d75bd2e7683f4b0"
SCRIPT = Path(__file__).with_name("mesh_check.py")  # the ConfigMap's one key
CHECKS_NAMESPACE = "mesh-checks"
GATEWAY_URL = "http://api-gateway.consul.svc.cluster.local:80/"


@dataclass(frozen=True)
class ServiceSpec:
    """One service as it runs after the step."""

    name: str
    namespace: str
    port: int
    versions: Mapping[str, str]  # running version -> its display name (fake-service NAME)
    upstreams: Sequence[str] = ()
    plaintext: bool = False  # still accepts plain text: runs outside the mesh, or in permissive mode

    @property
    def url(self) -> str:
        """The Service's in-cluster address, as a caller outside the mesh dials it."""
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{self.port}/"


@dataclass(frozen=True)
class Settings:
    """Everything that is not the model. The defaults keep a step's checks within 60 s (README)."""

    gateway_url: str = GATEWAY_URL
    requests: int = 20
    tolerance: float = 0.4
    plaintext_attempts: int = 3
    request_timeout: float = 5.0
    plaintext_timeout: float = 2.0
    settle_seconds: float = 15.0
    postcheck_seconds: float = 30.0
    window_seconds: int = 900
    api_timeout: float = 5.0
    precheck_seconds: float = 10.0
    ignore_namespaces: tuple[str, ...] = (CHECKS_NAMESPACE,)
    count_mesh_callers: bool = False
    kubernetes: Mapping[str, Any] = field(
        default_factory=lambda: {
            "url": mesh_check.KubeConfig.url,
            "token_file": mesh_check.KubeConfig.token_file,
            "ca_file": mesh_check.KubeConfig.ca_file,
        }
    )


def _by_name(services: Sequence[ServiceSpec]) -> dict[str, ServiceSpec]:
    by_name: dict[str, ServiceSpec] = {}
    for s in services:
        if s.name in by_name:
            raise ValueError(f"service {s.name!r} is given twice")
        by_name[s.name] = s
    for s in services:
        for up in s.upstreams:
            if up not in by_name:
                raise ValueError(f"service {s.name!r} calls {up!r}, which is not among the services")
    return by_name


def expected_names(services: Sequence[ServiceSpec], exposed: str) -> dict[str, list[str]]:
    """Per service met through the gateway (the exposed one and every upstream reachable from it,
    at any depth): the display names of its running versions."""
    by_name = _by_name(services)
    if exposed not in by_name:
        raise ValueError(f"the exposed service {exposed!r} is not among the services")
    reached: list[str] = []
    todo = [exposed]
    while todo:
        name = todo.pop(0)
        if name in reached:
            continue
        reached.append(name)
        todo += by_name[name].upstreams
    names: dict[str, list[str]] = {}
    for name in sorted(reached):
        display = sorted(set(by_name[name].versions.values()))
        if not display:
            raise ValueError(f"service {name!r} is met through the gateway but runs no version")
        names[name] = display
    return names


def tightened(before: Sequence[ServiceSpec], after: Sequence[ServiceSpec]) -> list[str]:
    """The services that accept plain text before the step and no longer after it."""
    was = {s.name for s in before if s.plaintext}
    return sorted(s.name for s in after if s.name in was and not s.plaintext)


def postcheck(services: Sequence[ServiceSpec], exposed: str, settings: Settings = Settings()) -> dict[str, Any]:
    return {
        "gateway": {
            "url": settings.gateway_url,
            "requests": settings.requests,
            "tolerance": settings.tolerance,
            "exposed": exposed,
            "names": expected_names(services, exposed),
        },
        "plaintext": [
            {
                "service": s.name,
                "url": s.url,
                "expect": "accepted" if s.plaintext else "refused",
                "attempts": settings.plaintext_attempts,
            }
            for s in sorted(services, key=lambda s: s.name)
        ],
        "timeouts": {
            "request": settings.request_timeout,
            "plaintext": settings.plaintext_timeout,
            "settle": settings.settle_seconds,
            "total": settings.postcheck_seconds,
        },
    }


def precheck(
    services: Sequence[ServiceSpec],
    tighten: Sequence[str],
    step: str,
    settings: Settings = Settings(),
    mesh_callers_count: Sequence[str] = (),
    outbound: Sequence[str] = (),
    probe: bool = False,
    mesh: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The precheck of a step that tightens `tighten`; the services' pods carry `app=<name>`.

    `probe`: probe each service in plain text first and read only the logs of those that still
    accept it (a service that refuses plain text already is not tightened by the step). `mesh`: the
    Mesh object to read, so that a Mesh closed already is not closed again.

    `outbound`: when the step closes the Mesh, the services whose sidecars must have called no
    destination outside the mesh.

    `mesh_callers_count`: services whose callers with a sidecar are cut off too (the step leaves
    them no mTLS path: no dialedDirectly while they still dial the pod IPs).
    """
    by_name = _by_name(services)
    unknown = sorted((set(tighten) | set(outbound)) - set(by_name))
    if unknown:
        raise ValueError(f"cannot tighten {unknown}: not among the services")
    return {
        "step": step,
        "window_seconds": settings.window_seconds,
        "services": [
            {
                "service": n,
                "namespace": by_name[n].namespace,
                "selector": f"app={n}",
                **({"count_mesh_callers": True} if n in mesh_callers_count else {}),
                **({"probe_url": by_name[n].url} if probe else {}),
            }
            for n in sorted(set(tighten))
        ],
        **(
            {
                "outbound": [
                    {"service": n, "namespace": by_name[n].namespace, "selector": f"app={n}"}
                    for n in sorted(set(outbound))
                ]
            }
            if outbound
            else {}
        ),
        **({"mesh": {"namespace": mesh[0], "name": mesh[1]}} if mesh else {}),
        "signal": {
            "container": mesh_check.Signal.container,
            "inbound_cluster": mesh_check.Signal.inbound_cluster,
            "ignore_namespaces": list(settings.ignore_namespaces),
            "count_mesh_callers": settings.count_mesh_callers,
            "mesh_annotation": mesh_check.Signal.mesh_annotation,
        },
        "kubernetes": dict(settings.kubernetes),
        "timeouts": {"request": settings.api_timeout, "total": settings.precheck_seconds},
    }


def expectation(
    services: Sequence[ServiceSpec],
    *,
    exposed: str,
    phase: str,
    previous: Sequence[ServiceSpec] | None = None,
    previous_phase: str | None = None,
    tighten: Sequence[str] = (),
    settings: Settings = Settings(),
    mesh_callers_count: Sequence[str] = (),
    outbound: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole document for the `up` that ends in `phase`.

    `previous` (the services as the deployed phase runs them) adds the precheck for the services
    that stop accepting plain text in this step; `tighten` adds others (a step that closes the Mesh).
    """
    doc: dict[str, Any] = {"version": mesh_check.SCHEMA_VERSION, "phase": phase}
    doc["postcheck"] = postcheck(services, exposed, settings)
    tighten = sorted(set(tighten) | set(tightened(previous or (), services)))
    if previous is not None or tighten or outbound:
        step = f"{previous_phase or 'deployed'} -> {phase}"
        doc["precheck"] = precheck(services, tighten, step, settings, mesh_callers_count, outbound)
    mesh_check.parse_expectation(doc)  # what the script would refuse fails here, at build time
    return doc


def to_json(doc: Mapping[str, Any]) -> str:
    """The document as the ConfigMap (or the env var) carries it."""
    return json.dumps(doc, indent=2) + "\n"

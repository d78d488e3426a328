"""The check script's document (meshcheck/mesh_check.py's dataclasses), from plain data.

Nothing from migration/, program/ or components/: components/checks.py describes the services from
the migration model and gets the document the Job reads. The schema is the script's dataclasses;
`document` writes them with the script's `to_document` and reads the result back with its
`parse_expectation`, so what is built here is what the Job accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import mesh_check

SCRIPT = Path(__file__).with_name("mesh_check.py")  # the ConfigMap's one key
CHECKS_NAMESPACE = "mesh-checks"
GATEWAY_URL = "http://api-gateway.consul.svc.cluster.local:80/"
IN_CLUSTER = mesh_check.Kubernetes()  # the API server, as a pod reaches it with its service account


@dataclass(frozen=True)
class Verify:
    """The stack's verify settings; their defaults are the script's (program/config.py VerifyConfig)."""

    requests: int
    tolerance: float
    window_seconds: int
    post: mesh_check.PostTimeouts
    pre: mesh_check.PreTimeouts
    traffic: mesh_check.Traffic = field(default_factory=mesh_check.Traffic)


def postcheck(
    services: Sequence[mesh_check.Service],
    verify: Verify,
    *,
    exposed: str | None,
    reached: Sequence[str] = (),
    gateway_url: str = GATEWAY_URL,
    kubernetes: mesh_check.Kubernetes = IN_CLUSTER,
    destinations: Mapping[str, str | None] | None = None,
    upstreams: Sequence[mesh_check.Upstream] = (),
    answers: Literal["fake-service", "any"] = "fake-service",
) -> mesh_check.Postcheck:
    """The postcheck of these services; through the gateway when `exposed` names its service.

    `destinations`: what the gateway's requests may meet outside the mesh, by name, with the host a
    caller dials it at by its own address (None: `<name>.service.consul`); only their 200s count."""
    names = [s.service for s in services]
    if len(set(names)) != len(names):
        raise ValueError(f"a service is given twice: {sorted(n for n in names if names.count(n) > 1)}")
    outside = dict(destinations or {})
    gateway = None
    if exposed is not None:
        unknown = sorted(set(reached) - set(names) - set(outside))
        if exposed not in reached or unknown:
            raise ValueError(f"the gateway meets {list(reached)}: expected {exposed!r} among them and only services")
        hosts = {host: name for name, host in outside.items() if host is not None and name in reached} or None
        gateway = mesh_check.Gateway(
            gateway_url, exposed, tuple(reached), verify.requests, verify.tolerance, hosts, answers
        )
    return mesh_check.Postcheck(tuple(services), gateway, kubernetes, verify.post, tuple(upstreams), verify.traffic)


def precheck(
    step: str,
    services: Sequence[mesh_check.Tightened],
    verify: Verify,
    *,
    access_log_format: Mapping[str, str],
    outbound: Sequence[mesh_check.Workload] = (),
    mesh: mesh_check.MeshObject | None = None,
    kubernetes: mesh_check.Kubernetes = IN_CLUSTER,
) -> mesh_check.Precheck:
    """The precheck of a step that makes `services` refuse plain text, or closes the Mesh (`outbound`)."""
    signal = mesh_check.Signal(format=dict(access_log_format), ignore_namespaces=(CHECKS_NAMESPACE,))
    return mesh_check.Precheck(
        step=step,
        signal=signal,
        services=tuple(services),
        outbound=tuple(outbound),
        mesh=mesh if outbound else None,
        window_seconds=verify.window_seconds,
        kubernetes=kubernetes,
        timeouts=verify.pre,
    )


def document(
    phase: str, *, postcheck: mesh_check.Postcheck | None = None, precheck: mesh_check.Precheck | None = None
) -> dict[str, Any]:
    """The JSON document; what the script would refuse fails here, at build time."""
    doc = mesh_check.to_document(mesh_check.Expectation(mesh_check.SCHEMA_VERSION, phase, postcheck, precheck))
    mesh_check.parse_expectation(doc)
    return doc

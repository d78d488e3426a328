"""Adopting a workload a team runs: what the program may change on it, and what it must refuse first.

    config (services[i].workload)          the live objects (read at preview and at up)
            |                                 LiveWorkload, LiveService, LiveNamespace
            |                                            |
            v                                            v
    program/config.py refuses what           live_problems(): one line each, before any
    config alone shows (make plan)           migration object changes (the gate)
                                                         |
                                                         v
                                             patch(): the only fields the program owns on the
                                             workload, for the phase (components/adoption.py applies it)

The program never creates, replaces or deletes an adopted workload, its namespace, its Service or
its ServiceAccount. It changes the workload through one server-side-apply patch with a field manager
of its own (`FIELD_MANAGER`), never forced, present from the first `up` that adopts it: a step back
is an update of that patch that drops fields, which pulumi-kubernetes awaits as a rollout; deleting
a patch would give the fields back with no await (pulumi-kubernetes `ssa.Relinquish`).

What the patch holds, by phase (a migrating service; one in the mesh from the start is injected by
its own manifest and gets only the address variables):

    discovery      nothing on the pod template (no roll); maxUnavailable 0 where nobody else sets it
    permissive+    the injection annotations and the drain (a rolling update adds the sidecar)
    virtual+       the caller's address variables, when the config names them (a roll)

and on its Service, one annotation: `consul.hashicorp.com/service-sync`, "true" while the service has
pods outside the mesh and "false" after (migration/workloads.py `catalog_synced`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import drain
from .fleet import Fleet, Problem, Service
from .phases import Phase, Phases, versions
from .sidecar import SIDECAR_PORTS
from .workloads import catalog_synced

FIELD_MANAGER = "consul-mesh-migration"

# Namespaces consul-k8s v2.0.3 never injects, whatever a pod says: `kube-system` and `kube-public`
# (`connect-inject/webhook/mesh_webhook.go`, `shouldInject`: kubeSystemNamespaces), and the names the
# chart's default `connectInject.namespaceSelector` keeps the webhook from ever seeing
# (`charts/consul/values.yaml`: `kubernetes.io/metadata.name NotIn [...]`; the program leaves the
# selector at its default). `consul` is the release's own namespace.
INJECTOR_SKIPS_NAMESPACES = {
    "kube-system": "never injected by consul-k8s",
    "kube-public": "never injected by consul-k8s",
    "local-path-storage": "excluded by the chart's connectInject.namespaceSelector",
    "openebs": "excluded by the chart's connectInject.namespaceSelector",
    "gmp-system": "excluded by the chart's connectInject.namespaceSelector",
    "gke-managed-cim": "excluded by the chart's connectInject.namespaceSelector",
    "consul": "Consul's own",
}
# --- the live objects, as plain data -------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    kind: str  # which probe: liveness, readiness, startup
    handler: str  # httpGet, tcpSocket, grpc, exec
    port: int | str | None = None
    scheme: str = "HTTP"


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class Container:
    name: str
    ports: tuple[ContainerPort, ...] = ()
    probes: tuple[Probe, ...] = ()
    pre_stop: bool = False
    env: Mapping[str, str | None] = field(default_factory=dict)  # name -> value (None: valueFrom)


@dataclass(frozen=True)
class LiveWorkload:
    """The pod template and rollout settings of a Deployment or StatefulSet, and who owns which field."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    containers: tuple[Container, ...]
    # What the pod template's own consul-k8s annotations say (None: not set).
    inject: str | None = None  # connect-inject
    inject_owners: tuple[str, ...] = ()  # the field managers of that annotation
    transparent_proxy: str | None = None  # transparent-proxy
    registers_as: str | None = None  # connect-service: the Consul service name it registers as
    direct: str | None = None  # transparent-proxy-exclude-outbound-cidrs: what its pods reach without the sidecar
    direct_owners: tuple[str, ...] = ()  # the field managers of that annotation
    service_account: str = "default"
    host_network: bool = False
    grace_seconds: int = 30
    replicas: int = 1
    strategy: str = "RollingUpdate"  # Deployment: RollingUpdate | Recreate; StatefulSet: RollingUpdate | OnDelete
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None
    partition: int = 0
    paused: bool = False
    managed_fields: Sequence[Mapping[str, Any]] = ()  # metadata.managedFields, as the API server wrote them

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str | None = None
    name: str = ""


@dataclass(frozen=True)
class LiveService:
    name: str
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]
    ignored: bool = False  # labelled service-ignore: the endpoints controller never registers it
    sync: str | None = None  # its consul.hashicorp.com/service-sync annotation
    sync_owners: tuple[str, ...] = ()  # the field managers of that annotation


@dataclass(frozen=True)
class LiveNamespace:
    name: str
    injector_skips: bool = False  # labelled so that the chart's namespaceSelector leaves it out


@dataclass(frozen=True)
class Live:
    """What one adopted service runs, read from the cluster."""

    workload: LiveWorkload
    service: LiveService
    namespace: LiveNamespace


# --- who owns a field ----------------------------------------------------------------------------


def _matches(key: str, part: str | Mapping[str, Any]) -> bool:
    if isinstance(part, str):
        return key == f"f:{part}"
    if not key.startswith("k:"):
        return False
    try:
        return json.loads(key[2:]) == dict(part)
    except ValueError:
        return False


def owners(managed_fields: Sequence[Mapping[str, Any]], path: Sequence[str | Mapping[str, Any]]) -> list[str]:
    """The managers that own `path` (or a field under it) in `metadata.managedFields`.

    FieldsV1 (Kubernetes `meta/v1` ManagedFieldsEntry, structured-merge-diff's field sets): a field is
    `f:<name>`, an item of a list map `k:<its keys as JSON>`; a leaf is `{}`. A path element is a
    field name, or the keys of a list-map item (`{"name": "app"}` for `containers[name=app]`).
    """
    out = []
    for entry in managed_fields:
        node: Any = entry.get("fieldsV1") or entry.get("fields_v1") or {}
        for part in path:
            key = next((k for k in node if _matches(k, part)), None) if isinstance(node, Mapping) else None
            if key is None:
                node = None
                break
            node = node[key]
        if node is not None:
            out.append(str(entry.get("manager") or "(unnamed)"))
    return sorted(set(out))


def _others(live: LiveWorkload, path: Sequence[str | Mapping[str, Any]]) -> list[str]:
    return [m for m in owners(live.managed_fields, path) if m != FIELD_MANAGER]


def _container_path(container: str, *rest: str | Mapping[str, Any]) -> tuple[str | Mapping[str, Any], ...]:
    return ("spec", "template", "spec", "containers", {"name": container}, *rest)


# --- what the phase needs --------------------------------------------------------------------------


def injected(service: Service, phase: Phase) -> bool:
    """Whether the program's patch injects the sidecar in `phase` (v2 of a migrating workload)."""
    return service.migrates and "v2" in versions(phase, service.migrates, adopted=True)


def _resolve(value: int | str | None, replicas: int, *, up: bool) -> int:
    """A rolling update's maxSurge (rounded up) or maxUnavailable (rounded down), as Kubernetes does."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        share = replicas * int(text[:-1]) / 100
        return math.ceil(share) if up else math.floor(share)
    return int(text)


def surge(live: LiveWorkload) -> int:
    """Extra pods one roll of this workload schedules at once (a StatefulSet replaces in place)."""
    if live.kind != "Deployment":
        return 0
    return max(_resolve(live.max_surge, live.replicas, up=True), 0)


def target_port(live: Live, port: int) -> ContainerPort | None:
    """The container port the Service's `port` sends to: what Consul must register."""
    sp = next((p for p in live.service.ports if p.port == port), None)
    if sp is None:
        return None
    target = sp.target_port if sp.target_port not in (None, "", 0) else sp.port
    for c in live.workload.containers:
        for cp in c.ports:
            if (isinstance(target, str) and cp.name == target) or (
                isinstance(target, int) and cp.container_port == target
            ):
                return cp
    return None


def app_container(live: Live, port: int) -> Container | None:
    cp = target_port(live, port)
    return next((c for c in live.workload.containers if cp is not None and cp in c.ports), None)


@dataclass(frozen=True)
class Patch:
    """The fields the program sets on an adopted workload in one phase (plain data; the component
    turns `inject` into consul-k8s's annotations)."""

    inject: bool = False  # the sidecar, transparent proxy, probes moved to Envoy
    service_port: int | None = None  # the container port Consul registers
    exclude_inbound_ports: tuple[int, ...] = ()  # probe ports that must not go through the sidecar
    direct: tuple[str, ...] = ()  # CIDRs the pods keep reaching without the sidecar (the API, link-local)
    container: str | None = None  # the app container the fields below belong to
    pre_stop_seconds: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    max_unavailable_zero: bool = False


def keeps_direct(service: Service, phase: Phase) -> bool:
    """Whether the pods must already reach what every pod needs without their sidecar (the Kubernetes
    API, the node's link-local services: migration/outside.py never_through_the_mesh), so that closing
    the Mesh cuts none of it: with the sidecar (a migrating service), or from virtual on for one the team
    injected itself (a roll of its own, before any `up` can close the Mesh)."""
    return injected(service, phase) or (not service.migrates and phase >= Phase.VIRTUAL)


def patch(fleet: Fleet, service: Service, phase: Phase, live: Live, direct: Sequence[str] = ()) -> Patch:
    """What the patch holds in `phase` (see the module docstring); `direct`: the CIDRs every meshed
    pod keeps reaching without its sidecar."""
    w = live.workload
    app = app_container(live, service.port)
    cp = target_port(live, service.port)
    inject = injected(service, phase) and app is not None and cp is not None
    pre_stop = drain.PRE_STOP_S if inject and app is not None and _drain_fits(w, app) else None
    env: dict[str, str] = {}
    if app is not None and phase >= Phase.VIRTUAL:
        env = {a.env: a.virtual(fleet.service(a.upstream).port) for a in service.addresses}
    # A roll of ours keeps the wanted count of pods (surge instead) when nobody else decides it; kept
    # in every phase, so a step back rolls the same way.
    rolls = True  # a migrating service's injection; one in the mesh from the start at virtual (`keeps_direct`)
    zero = w.kind == "Deployment" and rolls and not _others(w, ("spec", "strategy", "rollingUpdate", "maxUnavailable"))
    theirs = [m for m in w.direct_owners if m != FIELD_MANAGER]
    keep = tuple(direct) if direct and keeps_direct(service, phase) and app is not None and not theirs else ()
    return Patch(
        inject=inject,
        service_port=cp.container_port if inject and cp else None,
        direct=keep,
        exclude_inbound_ports=tuple(_probe_ports_to_exclude(live, cp)) if inject else (),
        container=app.name if app and (pre_stop or env) else None,
        pre_stop_seconds=pre_stop,
        env=env,
        max_unavailable_zero=zero,
    )


def _probe_ports_to_exclude(live: Live, cp: ContainerPort | None) -> list[int]:
    """grpc and tcpSocket probes keep testing the app when their port is not the service port: the
    injector moves only httpGet probes to Envoy (`overwriteProbes`), so these would go through the
    sidecar's inbound listener (`iptablesConfigJSON` excludes only what is listed here)."""
    out = []
    for c in live.workload.containers:
        for p in c.probes:
            if p.handler not in ("grpc", "tcpSocket"):
                continue
            port = _port_number(c, p.port)
            if port is not None and (cp is None or port != cp.container_port):
                out.append(port)
    return sorted(set(out))


def _port_number(c: Container, port: int | str | None) -> int | None:
    if isinstance(port, int):
        return port
    return next((p.container_port for p in c.ports if p.name == port), None)


def _drain_fits(w: LiveWorkload, app: Container) -> bool:
    """The preStop sleep is the program's only when the app has none and its grace period holds it."""
    return (
        not app.pre_stop
        and w.grace_seconds >= drain.TERMINATION_GRACE_S
        and not _others(w, _container_path(app.name, "lifecycle", "preStop"))
    )


# --- what to refuse ---------------------------------------------------------------------------------


def live_problems(
    fleet: Fleet, service: Service, running: Sequence[Phase], live: Live, direct: Sequence[str] = ()
) -> list[Problem]:
    """Everything that keeps this workload from joining the mesh, or the patch from applying, one line
    each. `running`: the service's phases before and after this `up`."""
    w, svc = live.workload, live.service
    out: list[str] = []
    ref = w.ref

    # Consul registers a pod through the Service selecting it, named like the service.
    if not svc.selector or any(w.labels.get(k) != v for k, v in svc.selector.items()):
        shown = ",".join(f"{k}={v}" for k, v in sorted(svc.selector.items())) or "(none)"
        out.append(
            f"Service {w.namespace}/{svc.name} does not select the pods of {ref} (selector {shown}); Consul registers "
            "a pod through the Service that selects it: select the template's labels"
        )
    if svc.ignored:
        out.append(f"Service {w.namespace}/{svc.name} is labelled service-ignore, so Consul never registers it")
    if len(svc.ports) != 1:
        shown = ", ".join(str(p.port) for p in svc.ports)
        out.append(
            f"Service {w.namespace}/{svc.name} has {len(svc.ports)} ports ({shown}); Consul CE registers one port per "
            "service (consul-k8s 2.0, endpoints controller): give the service one port"
        )
    cp = target_port(live, service.port)
    if cp is None:
        ports = ", ".join(f"{p.port}->{p.target_port or p.port}" for p in svc.ports) or "(none)"
        out.append(
            f"Service {w.namespace}/{svc.name} port {service.port} does not target a port of {ref}'s containers "
            f"(its ports: {ports}); the sidecar forwards to the container port Consul registers"
        )
    if w.service_account != service.name:
        out.append(
            f"{ref} runs as ServiceAccount {w.service_account!r}; with ACLs the sidecar logs in to Consul as its "
            f"ServiceAccount, which must be named like the service: use ServiceAccount {service.name!r}"
        )
    if w.host_network:
        out.append(f"{ref} uses hostNetwork: traffic redirection would apply to the node; run it on the pod network")
    for c in w.containers:
        for p in c.ports:
            if p.container_port in SIDECAR_PORTS:
                out.append(
                    f"{ref} container {c.name!r} listens on {p.container_port}, taken on a meshed pod by "
                    f"{SIDECAR_PORTS[p.container_port]}"
                )
    out += _injection_problems(service, w, live.namespace)
    out += _probe_problems(w, cp)
    out += _rollout_problems(service, w)
    out += _address_problems(fleet, service, running, live)
    out += _direct_problems(service, running, w, direct)
    out += _sync_problems(service, running, w.namespace, svc)
    return [Problem(service.name, line, "workload") for line in out]


def _sync_problems(service: Service, running: Sequence[Phase], namespace: str, svc: LiveService) -> list[str]:
    """A service-sync value of the team's own that differs from what this `up` applies (`running[0]`, the
    target phase: migration/step.py Step.running) would conflict with the program's patch of the Service
    (server-side apply, never forced)."""
    theirs = [m for m in svc.sync_owners if m != FIELD_MANAGER]
    wanted = "true" if catalog_synced(service, running[0]) else "false"
    if not theirs or svc.sync == wanted:
        return []
    return [
        f"Service {namespace}/{svc.name} sets service-sync {svc.sync!r} itself (managed by {', '.join(theirs)}); "
        'the program sets it phase by phase ("true" while the service has pods outside the mesh, then "false"): '
        "drop it from the manifest"
    ]


def _direct_problems(service: Service, running: Sequence[Phase], w: LiveWorkload, direct: Sequence[str]) -> list[str]:
    theirs = [m for m in w.direct_owners if m != FIELD_MANAGER]
    if not direct or not theirs or not any(keeps_direct(service, p) for p in running):
        return []
    missing = [c for c in direct if c not in (w.direct or "").split(",")]
    if not missing:
        return []  # the team's own value keeps what every pod needs: the program leaves it
    return [
        f"{w.ref} sets transparent-proxy-exclude-outbound-cidrs itself (managed by {', '.join(theirs)}) without "
        f"{', '.join(missing)}, which every meshed pod must reach without its sidecar once the Mesh closes (the "
        "Kubernetes API, the node's link-local services); add them to your value"
    ]


def _injection_problems(service: Service, w: LiveWorkload, ns: LiveNamespace) -> list[str]:
    out = []
    ref = w.ref
    inject = w.inject
    theirs = [m for m in w.inject_owners if m != FIELD_MANAGER]
    if service.migrates and inject is not None and theirs:
        out.append(
            f"{ref} already sets connect-inject {inject!r} on its pods (managed by {', '.join(theirs)}); the program "
            "injects a migrating service itself, phase by phase: drop it from the manifest"
            + (", or declare the service in the mesh from the start (migrates: false)" if inject == "true" else "")
        )
    if not service.migrates and inject != "true":
        out.append(
            f"{ref} is declared in the mesh from the start (migrates: false) but its pods are not injected "
            f"({'connect-inject ' + repr(inject) if inject else 'no connect-inject'}); set migrates: true to have the "
            "program inject it"
        )
    if w.transparent_proxy == "false":
        out.append(f"{ref} turns transparent proxy off on its pods; the migration needs it (virtual addresses)")
    if w.registers_as and w.registers_as != service.name:
        out.append(f"{ref} registers in Consul as {w.registers_as!r} (connect-service), not as {service.name!r}")
    if ns.injector_skips:
        out.append(f"namespace {ns.name} is labelled so that the chart's injector skips it (namespaceSelector)")
    return out


def _probe_problems(w: LiveWorkload, cp: ContainerPort | None) -> list[str]:
    out = []
    for c in w.containers:
        for p in c.probes:
            port = _port_number(c, p.port)
            if p.handler == "grpc" and cp is not None and port == cp.container_port:
                out.append(
                    f"{w.ref} container {c.name!r} has a grpc {p.kind} probe on its service port {port}: consul-k8s "
                    "moves only httpGet probes out of the sidecar's way, so once strict the kubelet's plain-text "
                    "probe is refused; probe another port, or use an httpGet or exec probe"
                )
            if p.handler == "httpGet" and p.scheme.upper() == "HTTPS":
                out.append(
                    f"{w.ref} container {c.name!r} has an HTTPS {p.kind} probe: consul-k8s sends it to a plain-HTTP "
                    "listener of Envoy; use HTTP or an exec probe"
                )
    return out


def _rollout_problems(service: Service, w: LiveWorkload) -> list[str]:
    ref = w.ref
    out = []
    if w.kind == "Deployment":
        if w.strategy == "Recreate":
            out.append(f"{ref} rolls with strategy Recreate: every pod would stop at once; use RollingUpdate")
        if w.paused:
            out.append(f"{ref} is paused: no roll would ever finish; resume it")
        theirs = _others(w, ("spec", "strategy", "rollingUpdate", "maxUnavailable"))
        lost = _resolve(w.max_unavailable, w.replicas, up=False)
        if theirs and lost > 0:
            out.append(
                f"{ref} rolls with maxUnavailable {w.max_unavailable} ({lost} of {w.replicas} pods), set by "
                f"{', '.join(theirs)}: the injection roll would lose capacity; set maxUnavailable: 0 in the manifest"
            )
        surge_theirs = _others(w, ("spec", "strategy", "rollingUpdate", "maxSurge"))
        if surge_theirs and surge(w) == 0 and not (theirs and lost > 0):
            out.append(
                f"{ref} rolls with maxSurge {w.max_surge}, set by {', '.join(surge_theirs)}: with maxUnavailable 0 "
                "no pod could be replaced; allow a surge of at least 1"
            )
    else:
        if w.strategy == "OnDelete":
            out.append(f"{ref} updates OnDelete: no pod would get its sidecar until deleted by hand; use RollingUpdate")
        if w.partition > 0:
            out.append(f"{ref} has partition {w.partition}: the pods below it would never be updated; set it to 0")
    return out


def _address_problems(fleet: Fleet, service: Service, running: Sequence[Phase], live: Live) -> list[str]:
    if not service.addresses or not any(p >= Phase.VIRTUAL for p in running):
        return []
    app = app_container(live, service.port)
    if app is None:
        return []
    out = []
    for a in service.addresses:
        want = a.virtual(fleet.service(a.upstream).port)
        have = app.env.get(a.env, "")
        theirs = _others(live.workload, _container_path(app.name, "env", {"name": a.env}))
        if a.env in app.env and have is None:
            out.append(
                f"{live.workload.ref} container {app.name!r} takes {a.env} from a ConfigMap or Secret (valueFrom): "
                f"point it at {want} there yourself and drop env from the upstream"
            )
        elif theirs and have != want:
            out.append(
                f"{live.workload.ref} container {app.name!r} sets {a.env} itself, managed by {', '.join(theirs)}: "
                f"the program never takes a field its owner manages; drop {a.env} from the manifest so the program "
                f"sets it, or set it to {want} yourself and drop env from the upstream"
            )
    return out


def step_problems(
    fleet: Fleet,
    target: Phases,
    running: Mapping[str, Sequence[Phase]],
    lives: Mapping[str, Live],
    direct: Sequence[str] = (),
) -> list[Problem]:
    """Every adopted service's live problems for this `up` (`running`: each service's phases)."""
    out: list[Problem] = []
    for s in fleet.services:
        if s.adopted and s.name in lives:
            out += live_problems(fleet, s, running.get(s.name, [target[s.name]]), lives[s.name], direct)
    return out

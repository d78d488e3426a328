"""make discover: draft the fleet's `services` config from what runs in a cluster, for review.

It reads the cluster with read-only verbs only (ops/kube.py: list Deployments, StatefulSets, Services,
EndpointSlices, Pods and Jobs; get pods/log) and writes a draft of `consul-mesh-migration:services`
(and `gateway.service`) to stdout or `--out`, never to the stack: a team reviews it, then puts it in
its stack file. What it drafts:

- every Deployment and StatefulSet with the one Service that selects its pods (none or several:
  listed, since such a workload cannot join the mesh), whether it is injected (its pods'
  `consul.hashicorp.com/connect-inject-status: injected`), its port and a protocol guess (the
  port's `appProtocol`, else its name's prefix, else http);
- the call graph seen by the sidecars of injected pods, one pod's `consul-dataplane` log at a time,
  read line by line, each record by the precheck's reader (meshcheck/mesh_check.py AccessLog):
  inbound records (cluster `local_app`) name the caller by its address, in plain text or mTLS;
  outbound records name the upstream by its cluster
  (`<service>.<namespace>.<dc>.internal.<trust domain>.consul`), or, through the catch-all
  `original-destination` chain, the address dialed outside the mesh: a pod or Service of the
  cluster is a call to that service, anything else a destination. Callers that are Job pods become
  `outside: job` services; callers it could not attribute (no pod has the address: VMs, other
  clusters, NAT) are listed with what they called.

What it cannot see: calls between two services neither of which has a sidecar (no log names them),
and connections still open (Envoy logs a TCP connection when it closes). Both are said in the draft.

usage: python -m ops.discover [--kubeconfig PATH] [--context NAME] [--namespace NS ...]
                              [--since SECONDS] [--out FILE]          (make discover)
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import yaml

from meshcheck.mesh_check import AccessLog, Record, Signal, spiffe_service
from migration.entries import ACCESS_LOG_FORMAT
from ops import kube

SIDECAR = "consul-dataplane"
INJECT_STATUS = "consul.hashicorp.com/connect-inject-status"
SERVICE_NAME = "consul.hashicorp.com/service-name"  # catalog sync registers the Service under this name
PROTOCOLS = ("http", "http2", "grpc", "tcp")
Mode = Literal["mtls", "plaintext"]


class Cluster(Protocol):
    """What discover reads: ops.kube.ReadOnlyKube, or a test's recorded answers."""

    def list(self, resource: kube.Resource, namespace: str | None = None) -> Iterator[dict[str, Any]]: ...

    def log_lines(self, namespace: str, pod: str, container: str, since_seconds: int) -> Iterator[str]: ...


# --- the inventory ------------------------------------------------------------------------------------


@dataclass
class Port:
    name: str
    port: int
    target: int | str
    app_protocol: str | None


@dataclass
class Workload:
    kind: str  # Deployment, StatefulSet
    namespace: str
    name: str
    labels: dict[str, str]  # the pod template's
    services: list[str] = field(default_factory=list)  # the Services selecting its pods
    injected: bool = False
    pods: int = 0


@dataclass
class Draft:
    """One draft service of the mesh: a workload behind its Service."""

    name: str  # the Consul name (the Service's name, or its service-name annotation)
    namespace: str
    workload: Workload
    port: Port
    protocol: str
    protocol_reason: str
    upstreams: set[str] = field(default_factory=set)
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (host, port)
    plaintext_callers: int = 0


@dataclass(frozen=True)
class Caller:
    """A caller the log names: a draft service, a Job outside the mesh, or an unattributed address."""

    kind: Literal["service", "job", "address"]
    name: str  # the draft service, the Job's CronJob (or Job), or the address
    namespace: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"


@dataclass
class Seen:
    """What the sidecar logs showed."""

    edges: Counter[tuple[str, str, Mode]] = field(default_factory=Counter)  # (caller key, callee, mode)
    callers: dict[str, Caller] = field(default_factory=dict)  # caller key -> who
    outside_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (draft service, host:port)
    pods_read: int = 0
    records: int = 0
    probes: int = 0


def protocol_of(port: Port) -> tuple[str, str]:
    """A protocol guess for a Service port and why: appProtocol, then the port name's prefix, else http."""
    app = (port.app_protocol or "").lower()
    by_app = {
        "http": "http",
        "https": "tcp",
        "h2c": "http2",
        "kubernetes.io/h2c": "http2",
        "grpc": "grpc",
        "tcp": "tcp",
    }
    if app in by_app:
        return by_app[app], f"appProtocol {port.app_protocol}"
    prefix = re.split(r"[-_]", port.name.lower(), maxsplit=1)[0] if port.name else ""
    if prefix in PROTOCOLS:
        return prefix, f"port name {port.name}"
    if prefix in ("https", "tls", "mysql", "postgres", "redis", "mongo", "amqp", "kafka"):
        return "tcp", f"port name {port.name}"
    return "http", "no appProtocol or telling port name: the program's default"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class Inventory:
    workloads: list[Workload]
    drafts: dict[str, Draft]  # by Consul name
    by_ip: dict[str, tuple[str, str]]  # pod or ClusterIP -> (kind, name): ("service", draft) or ("job", name)
    skipped: list[str]  # workloads that cannot join the mesh as they are, one line each
    injected_pods: list[tuple[str, str, str, int]]  # (namespace, pod, draft service, its port) whose sidecar to read


def _owner(pod: Mapping[str, Any], jobs: Mapping[tuple[str, str], str]) -> tuple[str, str] | None:
    """(kind, name) of the workload a pod belongs to: Deployment (through its ReplicaSet), StatefulSet, Job."""
    md = _meta(pod)
    for ref in md.get("ownerReferences") or []:
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if kind == "ReplicaSet":
            hash_ = (md.get("labels") or {}).get("pod-template-hash")
            return ("Deployment", name.removesuffix(f"-{hash_}")) if hash_ else None
        if kind == "StatefulSet":
            return ("StatefulSet", name)
        if kind == "Job":
            return ("Job", jobs.get((str(md.get("namespace", "")), name), name))
    return None


def inventory(cluster: Cluster, namespaces: Sequence[str] | None = None) -> Inventory:
    def each(resource: kube.Resource) -> Iterator[dict[str, Any]]:
        for ns in namespaces or [None]:
            yield from cluster.list(resource, ns)

    workloads: dict[tuple[str, str, str], Workload] = {}
    for kind, resource in (("Deployment", kube.DEPLOYMENTS), ("StatefulSet", kube.STATEFULSETS)):
        for obj in each(resource):
            md = _meta(obj)
            template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
            w = Workload(kind, str(md.get("namespace")), str(md.get("name")), dict(template.get("labels") or {}))
            workloads[(kind, w.namespace, w.name)] = w
    services: dict[tuple[str, str], Mapping[str, Any]] = {}
    for svc in each(kube.SERVICES):
        md, spec = _meta(svc), svc.get("spec") or {}
        services[(str(md.get("namespace")), str(md.get("name")))] = svc
        for w in workloads.values():
            if w.namespace == md.get("namespace") and _selects(spec.get("selector") or {}, w.labels):
                w.services.append(str(md.get("name")))
    # CronJob names of Jobs: a caller pod is named after the CronJob that runs it, not the Job of the day.
    jobs: dict[tuple[str, str], str] = {}
    for job in each(kube.JOBS):
        md = _meta(job)
        owner = next((r.get("name") for r in md.get("ownerReferences") or [] if r.get("kind") == "CronJob"), None)
        jobs[(str(md.get("namespace")), str(md.get("name")))] = str(owner or md.get("name"))
    by_ip: dict[str, tuple[str, str]] = {}
    pods_of: dict[tuple[str, str, str], list[tuple[str, str, bool, dict[str, int]]]] = defaultdict(list)
    for pod in each(kube.PODS):
        md, status = _meta(pod), pod.get("status") or {}
        if status.get("phase") not in ("Running", "Pending"):
            continue
        owner = _owner(pod, jobs)
        ip = status.get("podIP")
        if (pod.get("spec") or {}).get("hostNetwork"):
            continue  # its address is the node's: kubelet, not this pod, is what calls from there
        if owner and owner[0] == "Job":
            if ip:
                by_ip[ip] = ("job", f"{md.get('namespace')}/{owner[1]}")
            continue
        if owner:
            injected = (md.get("annotations") or {}).get(INJECT_STATUS) == "injected"
            named = {
                str(p["name"]): int(p["containerPort"])
                for c in (pod.get("spec") or {}).get("containers") or []
                for p in c.get("ports") or []
                if p.get("name") and p.get("containerPort")
            }
            pods_of[(owner[0], str(md.get("namespace")), owner[1])].append(
                (str(md.get("name")), ip or "", injected, named)
            )
    drafts: dict[str, Draft] = {}
    skipped: list[str] = []
    injected_pods: list[tuple[str, str, str, int]] = []
    for key, w in sorted(workloads.items()):
        pods = pods_of.get(key, [])
        w.pods, w.injected = len(pods), bool(pods) and all(p[2] for p in pods)
        where = f"{w.kind} {w.namespace}/{w.name}"
        if len(w.services) != 1:
            why = (
                "no Service selects its pods"
                if not w.services
                else f"Services {', '.join(sorted(w.services))} all select its pods"
            )
            skipped.append(f"{where}: {why} (a service of the mesh needs exactly one)")
            continue
        svc = services[(w.namespace, w.services[0])]
        ports = [
            Port(str(p.get("name") or ""), int(p["port"]), p.get("targetPort", p["port"]), p.get("appProtocol"))
            for p in (svc.get("spec") or {}).get("ports") or []
        ]
        if not ports:
            skipped.append(f"{where}: its Service {w.services[0]} has no port")
            continue
        name = str((_meta(svc).get("annotations") or {}).get(SERVICE_NAME) or w.services[0])
        if name in drafts:
            other = drafts[name].workload
            skipped.append(f"{where}: Consul name {name!r} is {other.kind} {other.namespace}/{other.name}'s already")
            continue
        protocol, reason = protocol_of(ports[0])
        if len(ports) > 1:
            reason += (
                f"; the Service has {len(ports)} ports, the draft takes the first ({ports[0].name or ports[0].port})"
            )
        drafts[name] = Draft(name, w.namespace, w, ports[0], protocol, reason)
        for pod, ip, injected, named in pods:
            if ip:
                by_ip[ip] = ("service", name)
            target = ports[0].target
            port = named.get(target) if isinstance(target, str) else target
            if injected and port:  # a named target port the pod does not have: no endpoint, nothing to read
                injected_pods.append((w.namespace, pod, name, port))
        cluster_ip = (svc.get("spec") or {}).get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            by_ip[cluster_ip] = ("service", name)
    return Inventory(list(workloads.values()), drafts, by_ip, skipped, injected_pods)


# --- the call graph from the sidecars' access logs ---------------------------------------------------


def _split(address: object) -> tuple[str, int] | None:
    """'10.0.2.14:48812' -> ('10.0.2.14', 48812); '[fd00::5]:80' -> ('fd00::5', 80)."""
    text = str(address or "")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


# The precheck's reader (meshcheck/mesh_check.py AccessLog): a record means the same to both, in the
# project's format or in Consul's default one, which a cluster the program has not configured still writes.
ACCESS_LOG = AccessLog(Signal(format=ACCESS_LOG_FORMAT))


def read_sidecars(cluster: Cluster, inv: Inventory, since_seconds: int) -> Seen:
    seen = Seen()
    for namespace, pod, service, port in inv.injected_pods:
        seen.pods_read += 1
        for line in cluster.log_lines(namespace, pod, SIDECAR, since_seconds):
            _, record = ACCESS_LOG.line(line, port)
            if record is None:
                continue  # the dataplane's own lines, Envoy's
            seen.records += 1
            if record.kind == "probe":
                seen.probes += 1
            elif record.kind in ("plaintext", "mtls"):
                _inbound(seen, inv, service, record)
            elif record.kind == "outbound":
                _outside_call(seen, inv, service, record.upstream_host)
            elif record.cluster.endswith(".consul"):  # <service>.<ns>.<dc>.internal.<trust domain>.consul
                callee = record.cluster.split(".", 1)[0]
                if callee in inv.drafts and callee != service:
                    _edge(seen, Caller("service", service), callee, "mtls")
    return seen


def _edge(seen: Seen, caller: Caller, callee: str, mode: Mode) -> None:
    seen.callers.setdefault(caller.key, caller)
    seen.edges[(caller.key, callee, mode)] += 1


def _inbound(seen: Seen, inv: Inventory, service: str, record: Record) -> None:
    mode: Mode = "mtls" if record.kind == "mtls" else "plaintext"
    by_spiffe = spiffe_service(record.peer) if record.peer else None
    ip = record.remote
    if by_spiffe:
        caller = Caller("service", by_spiffe) if by_spiffe in inv.drafts else Caller("address", f"{by_spiffe} ({ip})")
    elif ip in inv.by_ip:
        kind, name = inv.by_ip[ip]
        caller = (
            Caller("service", name)
            if kind == "service"
            else Caller("job", name.split("/", 1)[1], name.split("/", 1)[0])
        )
    elif ip and ipaddress.ip_address(ip).is_loopback:
        return  # the pod itself
    else:
        caller = Caller("address", ip or "(no address)")
    if caller.kind == "service" and caller.name == service:
        return
    _edge(seen, caller, service, mode)


def _outside_call(seen: Seen, inv: Inventory, service: str, upstream_host: str) -> None:
    upstream = _split(upstream_host)
    if upstream is None:
        return
    host, port = upstream
    kind, name = inv.by_ip.get(host, ("", ""))
    if kind == "service" and name != service:
        _edge(seen, Caller("service", service), name, "plaintext")  # dialed by pod IP, outside the mesh
    elif not kind:
        seen.outside_calls[(service, f"{host}:{port}")] += 1


# --- the draft ---------------------------------------------------------------------------------------


def destination_name(host: str, port: int) -> str:
    """A DNS-label name for an address outside the mesh, for the team to rename: 203.0.113.10:443 ->
    ext-203-0-113-10-443."""
    return re.sub(r"[^a-z0-9]+", "-", f"ext-{host}-{port}".lower()).strip("-")[:63].rstrip("-")


def draft(inv: Inventory, seen: Seen, accepted_keys: Iterable[str]) -> dict[str, Any]:
    """The draft config: `gateway.service` and `services`, with the notes a reviewer needs.

    `accepted_keys`: the service keys the stack config accepts (program.config.ServiceConfig), so the
    draft never carries a key `make plan` would refuse; what it cannot say as a key it says in a note.
    """
    keys = set(accepted_keys)
    for (caller_key, callee, _mode), _n in seen.edges.items():
        caller = seen.callers[caller_key]
        if caller.kind == "service" and caller.name in inv.drafts and callee in inv.drafts:
            inv.drafts[caller.name].upstreams.add(callee)
    for (service, address), _n in seen.outside_calls.items():
        host, _, port = address.rpartition(":")
        inv.drafts[service].destinations[destination_name(host, int(port))] = (host, int(port))
    plaintext_into: Counter[str] = Counter()
    for (_caller, callee, mode), n in seen.edges.items():
        if mode == "plaintext":
            plaintext_into[callee] += n
    entries: list[dict[str, Any]] = []
    notes: dict[str, list[str]] = {}
    for name, d in sorted(inv.drafts.items()):
        migrates = not d.workload.injected or plaintext_into[name] > 0
        # The Service's port: what callers dial (an adopted workload's target port is read live).
        entry: dict[str, Any] = {"name": name, "namespace": d.namespace, "port": d.port.port}
        if migrates:
            entry["migrates"] = True
        if d.upstreams:
            entry["upstreams"] = sorted(d.upstreams)
        why = [
            f"{d.workload.kind} {d.workload.namespace}/{d.workload.name}, {d.workload.pods} pod(s), "
            f"{'injected' if d.workload.injected else 'not injected'}; protocol {d.protocol} ({d.protocol_reason})"
        ]
        if "workload" in keys:
            entry["workload"] = {"kind": d.workload.kind, "name": d.workload.name}
        if "protocol" in keys:
            entry["protocol"] = d.protocol
        if d.destinations:
            listed = [{"name": n, "host": h, "port": p} for n, (h, p) in sorted(d.destinations.items())]
            if "destinations" in keys:
                entry["destinations"] = listed
            else:
                why.append("calls outside the mesh: " + ", ".join(f"{x['host']}:{x['port']}" for x in listed))
        entries.append(entry)
        notes[name] = why
    outside = _outside_entries(seen, inv)
    entries += outside
    gateway = _gateway_service(inv, entries)
    return {"gateway": gateway, "services": entries, "notes": notes, "unattributed": _unattributed(seen)}


def _outside_entries(seen: Seen, inv: Inventory) -> list[dict[str, Any]]:
    calls: dict[tuple[str, str], dict[str, set[Mode]]] = defaultdict(lambda: defaultdict(set))
    for (key, callee, mode), _n in seen.edges.items():
        caller = seen.callers[key]
        if caller.kind == "job" and callee in inv.drafts:
            calls[(caller.namespace, caller.name)][callee].add(mode)
    out: list[dict[str, Any]] = []
    for (namespace, job), upstreams in sorted(calls.items()):
        name = f"{job}-job" if job in inv.drafts else job
        entry: dict[str, Any] = {"name": name, "outside": "job", "namespace": namespace, "upstreams": sorted(upstreams)}
        if all(modes == {"mtls"} for modes in upstreams.values()):
            entry["sidecar"] = True
        out.append(entry)
    return out


def _gateway_service(inv: Inventory, entries: Sequence[Mapping[str, Any]]) -> str | None:
    """The API gateway's service: one in the mesh from the start that no service calls (an entry
    point), else any in the mesh from the start; None when nothing is."""
    mesh = [e["name"] for e in entries if not e.get("outside") and not e.get("migrates")]
    called = {u for e in entries for u in e.get("upstreams") or []}
    return next((n for n in mesh if n not in called), mesh[0] if mesh else None)


def _unattributed(seen: Seen) -> list[str]:
    out = []
    for (key, callee, mode), n in sorted(seen.edges.items()):
        caller = seen.callers[key]
        if caller.kind == "address":
            out.append(f"{caller.name} -> {callee}: {n} {'mTLS' if mode == 'mtls' else 'plain-text'} connection(s)")
    return out


def render(result: Mapping[str, Any], inv: Inventory, seen: Seen, source: str) -> str:
    """The draft as stack-file YAML with comments: under `config:` of Pulumi.<stack>.yaml."""
    lines = [
        f"# Draft by `make discover` from {source}: review it; nothing was applied.",
        f"# Read {seen.pods_read} sidecar log(s), {seen.records} access-log records "
        f"({seen.probes} kubelet probes left out).",
        "# Not seen: calls between two services that both run without a sidecar, and connections still open.",
        "# Put these keys under `config:` in Pulumi.<stack>.yaml, then `make plan STACK=<stack>`.",
    ]
    lines += [f"# make plan refuses this draft as it is: {line}" for line in result.get("refused") or []]
    if result["gateway"]:
        lines += ["consul-mesh-migration:gateway:", f"  service: {result['gateway']}"]
    else:
        lines.append("# gateway.service: no service runs in the mesh yet; the API gateway needs one (set it by hand)")
    lines.append("consul-mesh-migration:services:")
    for entry in result["services"]:
        for note in result["notes"].get(entry["name"], []):
            lines.append(f"  # {note}")
        lines.append("  - " + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip())
    for line in inv.skipped:
        lines.append(f"# left out: {line}")
    for line in result["unattributed"]:
        lines.append(
            f"# caller not attributed to a pod (a VM, another cluster? declare it with outside: vm|cluster): {line}"
        )
    return "\n".join(lines) + "\n"


def discover(
    cluster: Cluster, since_seconds: int, namespaces: Sequence[str] | None = None
) -> tuple[dict[str, Any], Inventory, Seen]:
    from program.config import ServiceConfig

    inv = inventory(cluster, namespaces)
    seen = read_sidecars(cluster, inv, since_seconds)
    result = draft(inv, seen, ServiceConfig.model_fields)
    judge(result)
    return result, inv, seen


def judge(result: dict[str, Any]) -> None:
    """Read the draft as `make plan` reads the config (program.config.parse_config): a refusal is kept,
    line by line, for the reviewer (`refused`)."""
    from program.config import ConfigError, parse_config

    keys: dict[str, Any] = {"services": result["services"]}
    if result["gateway"]:
        keys["gateway"] = {"service": result["gateway"]}
    result["refused"] = []
    try:
        parse_config(keys)
    except ConfigError as e:
        result["refused"] = str(e).splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config")
    parser.add_argument("--context", help="default: the kubeconfig's current context")
    parser.add_argument("--namespace", action="append", help="read only these namespaces (repeatable)")
    parser.add_argument("--since", type=int, default=3600, help="seconds of sidecar logs to read (default 3600)")
    parser.add_argument("--out", help="write the draft here instead of stdout")
    args = parser.parse_args(argv)
    try:
        creds = kube.load_kubeconfig(args.kubeconfig, args.context)
        client = kube.ReadOnlyKube(creds)
        try:
            result, inv, seen = discover(client, args.since, args.namespace)
        finally:
            client.close()
    except kube.KubeError as e:
        print(f"discover: {e}", file=sys.stderr)
        return 1
    text = render(result, inv, seen, f"{creds.server} ({args.context or 'current context'})")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(
            f"discover: wrote the draft to {args.out} ({len(result['services'])} services); review it", file=sys.stderr
        )
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A recorded cluster for `make discover`: the Kubernetes API's answers and the sidecars' logs of a
fleet that runs, generated from one description and served by a loopback API server.

The answers are shaped as the API server sends them: `<Kind>List` documents with `metadata.
resourceVersion` and, when a `limit` cuts a list, `metadata.continue`; items without `kind` and
`apiVersion` (a list names them once); the fields the API server fills in (uid, resourceVersion,
creationTimestamp, generation, managedFields, the defaults of pod and workload specs, status). The
tests hold every answer to the strict JSON schemas of Kubernetes 1.35 that kubernetes-validate
ships (the dev lock), so a field this module made up fails there.

The sidecar logs are what a `consul-dataplane` container prints: the dataplane's own lines (hclog),
Envoy's lines, and one access-log record per connection or request in the project's format
(migration/entries.py ACCESS_LOG_FORMAT: Consul's default keys, agent/xds/accesslogs/accesslogs.go
defaultJSONFormat, plus downstream_tls_version, downstream_peer_uri_san, connection_id), rendered by
devtools/stubs.py's model of Envoy (render_record: numbers for the byte counts, durations and response
code, null for an operator with no value, "-" for %PROTOCOL% on a TCP connection). Which chain writes
which record follows consul agent/xds/listeners.go: the public listener's mTLS chain (an HTTP
connection manager to `local_app`, the caller's SPIFFE ID), its permissive chain (a TCP proxy matched
on the service port, no TLS), the expose listeners of kubelet's probes (ports 20300-20599), and on the
outbound listener the upstream clusters `<service>.default.<dc>.internal.<trust domain>.consul` and the
catch-all `original-destination`. It is served on devtools/stubs.py's loopback event loop.

usage: python -m devtools.cluster [--services 200] [--per-call 3] [--port 0]   (serves until interrupted)
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from devtools import stubs
from migration.entries import ACCESS_LOG_FORMAT

DC = "dc1"
CREATED = "2026-11-20T09:00:00Z"
STARTED = 1795687200.0  # 2026-11-26T10:00:00Z: when the recorded sidecars started
INJECTED_ANNOTATIONS = {
    "consul.hashicorp.com/connect-inject": "true",
    "consul.hashicorp.com/connect-inject-status": "injected",
    "consul.hashicorp.com/transparent-proxy-status": "enabled",
}
Mode = Literal["mtls", "plaintext"]


@dataclass
class App:
    name: str
    namespace: str
    port: int = 9091
    port_name: str = "http"
    app_protocol: str | None = None
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    replicas: int = 2
    injected: bool = False
    services: int = 1  # how many Services select its pods (0 or 2: a workload discover leaves out)


@dataclass
class Call:
    caller: str  # an app, "job:<namespace>/<cronjob>", or "ip:<address>"
    callee: str  # an app, or "ext:<ip>:<port>"
    mode: Mode
    count: int = 3


@dataclass
class Recorded:
    apps: list[App]
    calls: list[Call]
    cronjobs: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)
    probes: int = 2  # kubelet probe records per injected pod

    def __post_init__(self) -> None:
        self._ips = (f"10.1.{i // 250}.{i % 250 + 2}" for i in itertools.count())
        self._cluster_ips = (f"172.20.{i // 250 + 1}.{i % 250 + 2}" for i in itertools.count())
        self.by_name = {a.name: a for a in self.apps}
        self.pod_ips: dict[str, list[tuple[str, str]]] = {}  # app -> [(pod name, ip)]
        self.cluster_ip: dict[str, str] = {}
        for a in self.apps:
            h = _hash(a.name)[:10]
            pods = [
                (f"{a.name}-{i}" if a.kind == "StatefulSet" else f"{a.name}-{h}-{_hash(a.name + str(i))[:5]}")
                for i in range(a.replicas)
            ]
            self.pod_ips[a.name] = [(p, next(self._ips)) for p in pods]
            self.cluster_ip[a.name] = next(self._cluster_ips)
        self.job_pods = {cj: (f"{cj[1]}-29400000-{_hash(cj[1])[:5]}", next(self._ips)) for cj in self.cronjobs}

    # --- the API's answers ------------------------------------------------------------------------

    def items(self, plural: str) -> list[dict[str, Any]]:
        return {
            "deployments": lambda: [self._workload(a) for a in self.apps if a.kind == "Deployment"],
            "statefulsets": lambda: [self._workload(a) for a in self.apps if a.kind == "StatefulSet"],
            "services": lambda: [s for a in self.apps for s in self._services(a)],
            "endpointslices": lambda: [s for a in self.apps for s in self._slices(a)],
            "pods": lambda: [p for a in self.apps for p in self._pods(a)] + [self._job_pod(cj) for cj in self.cronjobs],
            "jobs": lambda: [self._job(cj) for cj in self.cronjobs],
        }[plural]()

    def page(
        self,
        plural: str,
        namespace: str | None,
        limit: int | None,
        token: str | None,
        every: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One answer of a list request, chunked like the API server's (`limit`, `continue`)."""
        items = [i for i in (every or self.items(plural)) if namespace in (None, i["metadata"]["namespace"])]
        start = int(token or 0)
        end = start + limit if limit else len(items)
        meta: dict[str, Any] = {"resourceVersion": "48213"}
        if end < len(items):
            meta["continue"] = str(end)
            meta["remainingItemCount"] = len(items) - end
        group, kind = LISTS[plural]
        return {"kind": kind, "apiVersion": group, "metadata": meta, "items": items[start:end]}

    def _meta(self, name: str, namespace: str, kind: str, **more: Any) -> dict[str, Any]:
        api = {
            "Deployment": "apps/v1",
            "StatefulSet": "apps/v1",
            "Job": "batch/v1",
            "EndpointSlice": "discovery.k8s.io/v1",
        }
        return {
            "name": name,
            "namespace": namespace,
            "uid": _uid(kind, namespace, name),
            "resourceVersion": str(int(_hash(kind + name)[:6], 16)),
            "creationTimestamp": CREATED,
            **more,
            "managedFields": [
                {
                    "manager": "kube-controller-manager"
                    if kind in ("Pod", "EndpointSlice", "Job")
                    else "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": api.get(kind, "v1"),
                    "time": CREATED,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}},
                }
            ],
        }

    def _template(self, a: App) -> dict[str, Any]:
        annotations = {"consul.hashicorp.com/connect-inject": "true"} if a.injected else {}
        return {
            "metadata": {"labels": {"app": a.name}, **({"annotations": annotations} if annotations else {})},
            "spec": {
                "containers": [
                    {
                        "name": a.name,
                        "image": "nicholasjackson/fake-service:v0.26.0",
                        "ports": [{"name": a.port_name, "containerPort": a.port, "protocol": "TCP"}],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    }
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {},
                "schedulerName": "default-scheduler",
            },
        }

    def _workload(self, a: App) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "replicas": a.replicas,
            "selector": {"matchLabels": {"app": a.name}},
            "template": self._template(a),
            "revisionHistoryLimit": 10,
        }
        status: dict[str, Any] = {"observedGeneration": 1, "replicas": a.replicas, "readyReplicas": a.replicas}
        if a.kind == "Deployment":
            spec |= {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "progressDeadlineSeconds": 600,
            }
            status |= {"updatedReplicas": a.replicas, "availableReplicas": a.replicas}
            annotations = {"deployment.kubernetes.io/revision": "1"}
        else:
            spec |= {
                "serviceName": a.name,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            }
            status |= {
                "currentReplicas": a.replicas,
                "updatedReplicas": a.replicas,
                "availableReplicas": a.replicas,
                "currentRevision": f"{a.name}-{_hash(a.name)[:10]}",
                "updateRevision": f"{a.name}-{_hash(a.name)[:10]}",
                "collisionCount": 0,
            }
            annotations = {}
        meta = self._meta(
            a.name,
            a.namespace,
            a.kind,
            generation=1,
            labels={"app": a.name},
            **({"annotations": annotations} if annotations else {}),
        )
        return {"metadata": meta, "spec": spec, "status": status}

    def _services(self, a: App) -> list[dict[str, Any]]:
        out = []
        for i in range(a.services):
            name = a.name if i == 0 else f"{a.name}-alt"
            ip = self.cluster_ip[a.name] if i == 0 else f"172.20.250.{self.apps.index(a) % 250 + 2}"
            port: dict[str, Any] = {"name": a.port_name, "protocol": "TCP", "port": a.port, "targetPort": a.port}
            if a.app_protocol:
                port["appProtocol"] = a.app_protocol
            out.append(
                {
                    "metadata": self._meta(name, a.namespace, "Service", labels={"app": a.name}),
                    "spec": {
                        "ports": [port],
                        "selector": {"app": a.name},
                        "clusterIP": ip,
                        "clusterIPs": [ip],
                        "type": "ClusterIP",
                        "sessionAffinity": "None",
                        "ipFamilies": ["IPv4"],
                        "ipFamilyPolicy": "SingleStack",
                        "internalTrafficPolicy": "Cluster",
                    },
                    "status": {"loadBalancer": {}},
                }
            )
        return out

    def _slices(self, a: App) -> list[dict[str, Any]]:
        if a.services == 0:
            return []
        return [
            {
                "metadata": self._meta(
                    f"{a.name}-{_hash('slice' + a.name)[:5]}",
                    a.namespace,
                    "EndpointSlice",
                    generateName=f"{a.name}-",
                    generation=1,
                    labels={
                        "kubernetes.io/service-name": a.name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                    ownerReferences=[
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "name": a.name,
                            "uid": _uid("Service", a.namespace, a.name),
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                ),
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [ip],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {
                            "kind": "Pod",
                            "namespace": a.namespace,
                            "name": pod,
                            "uid": _uid("Pod", a.namespace, pod),
                        },
                        "nodeName": "ip-10-0-1-10.us-west-2.compute.internal",
                        "zone": "us-west-2a",
                    }
                    for pod, ip in self.pod_ips[a.name]
                ],
                "ports": [{"name": a.port_name, "protocol": "TCP", "port": a.port}],
            }
        ]

    def _pod(
        self,
        name: str,
        namespace: str,
        ip: str,
        owner: dict[str, Any],
        labels: dict[str, str],
        containers: list[dict[str, Any]],
        annotations: dict[str, str],
        restart: str,
    ) -> dict[str, Any]:
        return {
            "metadata": self._meta(
                name,
                namespace,
                "Pod",
                labels=labels,
                ownerReferences=[owner],
                **({"annotations": annotations} if annotations else {}),
            ),
            "spec": {
                "containers": containers,
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "serviceAccount": "default",
                "nodeName": "ip-10-0-1-10.us-west-2.compute.internal",
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                ],
                "priority": 0,
                "enableServiceLinks": True,
                "preemptionPolicy": "PreemptLowerPriority",
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED}
                ],
                "hostIP": "10.0.1.10",
                "hostIPs": [{"ip": "10.0.1.10"}],
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": CREATED,
                "qosClass": "BestEffort",
            },
        }

    def _pods(self, a: App) -> list[dict[str, Any]]:
        template = self._template(a)
        containers = list(template["spec"]["containers"])
        if a.injected:
            containers.append(
                {
                    "name": "consul-dataplane",
                    "image": "hashicorp/consul-dataplane:2.0.3",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            )
        out = []
        for i, (pod, ip) in enumerate(self.pod_ips[a.name]):
            if a.kind == "Deployment":
                rs = f"{a.name}-{_hash(a.name)[:10]}"
                owner = {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs,
                    "uid": _uid("ReplicaSet", a.namespace, rs),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
                labels = {"app": a.name, "pod-template-hash": _hash(a.name)[:10]}
            else:
                owner = {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": a.name,
                    "uid": _uid("StatefulSet", a.namespace, a.name),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
                labels = {
                    "app": a.name,
                    "apps.kubernetes.io/pod-index": str(i),
                    "statefulset.kubernetes.io/pod-name": pod,
                }
            out.append(
                self._pod(
                    pod,
                    a.namespace,
                    ip,
                    owner,
                    labels,
                    containers,
                    dict(INJECTED_ANNOTATIONS) if a.injected else {},
                    "Always",
                )
            )
        return out

    def _job_name(self, cj: tuple[str, str]) -> str:
        return f"{cj[1]}-29400000"

    def _job(self, cj: tuple[str, str]) -> dict[str, Any]:
        ns, name = cj
        job = self._job_name(cj)
        selector = {"batch.kubernetes.io/controller-uid": _uid("Job", ns, job)}
        return {
            "metadata": self._meta(
                job,
                ns,
                "Job",
                generation=1,
                labels={"batch.kubernetes.io/job-name": job},
                ownerReferences=[
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": name,
                        "uid": _uid("CronJob", ns, name),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            ),
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "completionMode": "NonIndexed",
                "suspend": False,
                "podReplacementPolicy": "TerminatingOrFailed",
                "manualSelector": False,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": {**selector, "batch.kubernetes.io/job-name": job}},
                    "spec": {
                        "containers": [
                            {
                                "name": "report",
                                "image": "curlimages/curl:8.11.1",
                                "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                                "imagePullPolicy": "IfNotPresent",
                            }
                        ],
                        "restartPolicy": "OnFailure",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "securityContext": {},
                        "schedulerName": "default-scheduler",
                    },
                },
            },
            "status": {"active": 1, "startTime": CREATED, "ready": 1, "terminating": 0, "uncountedTerminatedPods": {}},
        }

    def _job_pod(self, cj: tuple[str, str]) -> dict[str, Any]:
        ns, _ = cj
        job = self._job_name(cj)
        pod, ip = self.job_pods[cj]
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job,
            "uid": _uid("Job", ns, job),
            "controller": True,
            "blockOwnerDeletion": True,
        }
        labels = {
            "batch.kubernetes.io/job-name": job,
            "job-name": job,
            "batch.kubernetes.io/controller-uid": _uid("Job", ns, job),
        }
        containers = self._job(cj)["spec"]["template"]["spec"]["containers"]
        return self._pod(pod, ns, ip, owner, labels, containers, {}, "OnFailure")

    # --- the sidecar logs ---------------------------------------------------------------------------

    def log(self, namespace: str, pod: str) -> Iterator[str]:
        """The consul-dataplane container's log of an injected pod, line by line: the dataplane's and
        Envoy's own lines, then one access-log record per connection or request, rendered through the
        format the program configures (migration/entries.py ACCESS_LOG_FORMAT) by devtools/stubs.py."""
        app = next(a for a in self.apps if any(p == pod for p, _ in self.pod_ips[a.name]) and a.namespace == namespace)
        ip = dict(self.pod_ips[app.name])[pod]
        for _, line in stubs.dataplane_lines(STARTED):
            yield line + "\n"
        seq = itertools.count(1)

        def record(chain: stubs.Chain, local: str, upstream: str, caller: str = ip, **more: Any) -> str:
            """One record, connection n of this sidecar: the caller's ephemeral port and the start time
            follow n, so every record of a log is distinct."""
            n = next(seq)
            remote = f"{caller}:{40000 + n % 20000}"
            c = stubs.Connection(chain, remote, local, STARTED + n / 1000, upstream, connection_id=n, **more)
            return stubs.render_record(ACCESS_LOG_FORMAT, c) + "\n"

        app_addr = f"127.0.0.1:{app.port}"
        for _ in range(self.probes):  # kubelet, from the node, on the readiness expose listener
            probe = {"path": "/health", "user_agent": "kube-probe/1.35"}
            yield record("expose", f"{ip}:{stubs.READINESS_PORT}", app_addr, "10.0.1.10", **probe)
        for call in self.calls:
            for _ in range(call.count):
                if call.callee == app.name:  # inbound, on this pod's public listener
                    remote = self._caller_ip(call.caller)
                    if call.mode == "mtls":
                        peer = stubs.spiffe(call.caller, datacenter=DC)
                        yield record("mtls", f"{ip}:{stubs.PUBLIC_LISTENER_PORT}", app_addr, remote, peer=peer)
                    else:  # the permissive chain: a TCP proxy matched on the service port
                        yield record("permissive", f"{ip}:{app.port}", app_addr, remote, bytes_received=76)
                elif call.caller == app.name:  # outbound, through this pod's outbound listener
                    if call.callee.startswith("ext:"):
                        dest = call.callee.removeprefix("ext:")
                        yield record("outbound", dest, dest)
                        continue
                    callee = self.by_name[call.callee]
                    if call.mode == "mtls":  # the callee's virtual address, its cluster
                        cluster = f"{callee.name}.default.{DC}.internal.{stubs.TRUST_DOMAIN}"
                        target = f"{self.pod_ips[callee.name][0][1]}:{stubs.PUBLIC_LISTENER_PORT}"
                        virtual = f"{self.cluster_ip[callee.name]}:{callee.port}"
                        yield record("upstream", virtual, target, cluster=cluster)
                    else:  # a pod IP from <callee>.service.consul: outside the mesh's routing
                        target = f"{self.pod_ips[callee.name][0][1]}:{callee.port}"
                        yield record("outbound", target, target)

    def _caller_ip(self, caller: str) -> str:
        if caller.startswith("ip:"):
            return caller.removeprefix("ip:")
        if caller.startswith("job:"):
            ns, name = caller.removeprefix("job:").split("/")
            return self.job_pods[(ns, name)][1]
        return self.pod_ips[caller][0][1]

    def injected_pods(self) -> list[tuple[str, str]]:
        return [(a.namespace, p) for a in self.apps if a.injected for p, _ in self.pod_ips[a.name]]


LISTS = {
    "deployments": ("apps/v1", "DeploymentList"),
    "statefulsets": ("apps/v1", "StatefulSetList"),
    "services": ("v1", "ServiceList"),
    "endpointslices": ("discovery.k8s.io/v1", "EndpointSliceList"),
    "pods": ("v1", "PodList"),
    "jobs": ("batch/v1", "JobList"),
}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _uid(kind: str, namespace: str, name: str) -> str:
    h = _hash(f"{kind}/{namespace}/{name}")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def fleet_of(services: int = 200, per_call: int = 3) -> Recorded:
    """A cluster mid-way into the migration, by the shape of devtools/fleets.py's 200-service fleet:
    `gw` and 40 front services in the mesh (gw calls them over mTLS); they call 80 back-end
    services through service DNS (pod IPs, through `original-destination`), of which the first 10
    are injected already and permissive; those call the 79 leaf services (one a StatefulSet). Three
    CronJobs and two VMs call back-ends in plain text; five front services call an external API.
    Two workloads discover must leave out: one no Service selects, one two Services select."""
    fronts, backs = max(1, services // 5), max(2, (2 * services) // 5)
    leaves = max(1, services - 1 - fronts - backs)
    team = lambda i: f"team-{i % 20}"  # noqa: E731
    apps = [App("gw", "team-0", injected=True)]
    apps += [App(f"f{i}", team(i), injected=True) for i in range(fronts)]
    apps += [App(f"b{j}", team(j), port=8080, port_name="grpc-api", injected=j < 10, replicas=1) for j in range(backs)]
    apps += [
        App(
            f"c{k}",
            team(k),
            port=5432 if k == 0 else 9090,
            port_name="tcp-db" if k == 0 else "http",
            kind="StatefulSet" if k == 0 else "Deployment",
            replicas=1,
        )
        for k in range(leaves)
    ]
    apps += [App("orphan", "team-1", services=0, replicas=1), App("twice", "team-2", services=2, replicas=1)]
    calls = [Call("gw", f"f{i}", "mtls") for i in range(fronts)]
    calls += [Call(f"f{i}", f"b{i % backs}", "plaintext") for i in range(fronts)]
    calls += [Call(f"f{i}", f"b{(i + fronts) % backs}", "plaintext") for i in range(fronts)]
    calls += [Call(f"b{j}", f"c{j % leaves}", "plaintext") for j in range(min(10, backs))]
    cronjobs = [(team(j), f"report-{j}") for j in range(min(3, backs))]
    calls += [Call(f"job:{ns}/{name}", f"b{j}", "plaintext") for j, (ns, name) in enumerate(cronjobs)]
    calls += [Call(f"ip:192.168.40.{7 + v}", "b3" if backs > 3 else "b0", "plaintext") for v in range(2)]
    calls += [Call(f"f{i}", "ext:203.0.113.10:443", "plaintext") for i in range(min(5, fronts))]
    for c in calls:
        c.count = per_call
    return Recorded(apps, calls, cronjobs)


class Server:
    """The recorded cluster on loopback (devtools/stubs.py's event loop): GET lists (chunked) and
    pods/log; any other method is refused (and counted), so a test proves the client only reads."""

    def __init__(self, cluster: Recorded, port: int = 0) -> None:
        self.cluster = cluster
        self.port = port
        self.gets: list[str] = []
        self.refused: list[str] = []
        # Recorded once, as a cluster's answers are: serving them costs what an API server's cache does.
        self.logs = {pod: "".join(cluster.log(ns, pod)).encode() for ns, pod in cluster.injected_pods()}
        self.lists = {plural: cluster.items(plural) for plural in LISTS}
        self.net: stubs.Loopback | None = None

    def start(self, net: stubs.Loopback | None = None) -> str:
        self.net = net or stubs.shared()
        self.port = self.net.http("127.0.0.1", self.port, self._answer)
        return f"http://127.0.0.1:{self.port}"

    def shutdown(self) -> None:
        if self.net is not None:
            self.net.shut([("127.0.0.1", self.port)])
            self.net.check()

    async def _answer(self, method: str, target: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        url = urllib.parse.urlsplit(target)
        if method != "GET":
            self.refused.append(f"{method} {target}")
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "MethodNotAllowed"}
            return 405, json.dumps({**status, "code": 405}).encode(), "application/json"
        query = dict(urllib.parse.parse_qsl(url.query))
        self.gets.append(url.path)
        parts = url.path.strip("/").split("/")
        if parts[-1] == "log" and "pods" in parts:
            return 200, self.logs[parts[parts.index("pods") + 1]], "text/plain"
        plural = parts[-1]
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        if plural not in LISTS:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound",
                "code": 404,
            }
            return 404, json.dumps(status).encode(), "application/json"
        limit = int(query["limit"]) if "limit" in query else None
        doc = self.cluster.page(plural, namespace, limit, query.get("continue"), self.lists[plural])
        return 200, json.dumps(doc).encode(), "application/json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--per-call", type=int, default=3, help="access-log records per call in each log")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    url = Server(fleet_of(args.services, args.per_call), args.port).start()
    print(f"recorded cluster of {args.services} services at {url}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""The in-cluster check of one migration step. Python standard library only, one file.

It runs in a Job in namespace `mesh-checks`, outside the mesh, from a ConfigMap, in a pinned stock
Python image (program/versions.py, CHECK_IMAGE):

    python3 -B mesh_check.py postcheck [--expectation FILE]
    python3 -B mesh_check.py precheck  [--expectation FILE]

The whole expectation is one JSON document, read from --expectation FILE, else from
$MESH_CHECK_EXPECTATION (the JSON text), else from the file named by $MESH_CHECK_EXPECTATION_FILE.
Its schema is the dataclasses below, written once: `parse_expectation` reads a document into them and
`to_document` writes them back (meshcheck/expectation.py builds them from the migration model).

postcheck, after an `up`: per service, from its EndpointSlices and the pods its Service selects,
every version that runs after the step has a ready pod behind the Service, every ready pod of it
refuses plain text (strict) or accepts it (outside the mesh, permissive) when probed at its own
address, and nothing else is behind the Service but the versions the step retires (Pulumi deletes
them after this check). Then N requests through the API gateway answer 200 at every hop, and the
names met are the versions' (each version that runs in at least 1/k - tolerance of its service's
answers, a retiring one allowed). Rounds repeat until they pass or `settle` seconds have gone by.

precheck, before a step that tightens plain-text access: for each such service still accepting
plain text, it reads the sidecars' Envoy access logs (pods/log, `timestamps=true`) for the last
`window_seconds` in the format the program configured, keeps the plain-text inbound connections
(cluster `local_app`, the service's own port, no TLS) and refuses the step when a caller outside
the mesh (or, where no dialedDirectly path stays, with a sidecar) made one, naming it. Envoy logs a
TCP-proxy connection only when it closes, so it also reads the sidecars' statistics (the pod's
Prometheus port) for the plain-text connections open now, and refuses the step when there are more
than the service's callers in the mesh can hold. Before the step that closes the Mesh, it reads the
same for calls from the mesh to destinations outside it.

Output: exactly one line on stdout. Exit 0: the summary, after `[phase]`. Exit 1: the check's
verdict, `<check> <part>: expected ..., saw ...`. Exit 2: `cannot check: ...` (a bad document, an
API that cannot be used): no verdict on the step. The line is also the container's termination
message (/dev/termination-log), which pulumi-kubernetes' Job await reports in the `up`'s error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import os
import socket
import ssl
import sys
import time
import types
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TextIO

SCHEMA_VERSION = 2
USER_AGENT = "mesh-check/2"
MAX_BODY = 1 << 20  # fake-service answers are a few KiB
# Envoy's /stats/prometheus writes every counter before any gauge (source/server/admin/prometheus_stats.cc
# statsAsPrometheus), some hundred lines a cluster: a sidecar with a few dozen upstreams passes 1 MiB
# before the listener's gauges the precheck reads.
MAX_METRICS = 16 << 20
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

Verdict = Literal["accepted", "refused"]


class CheckFailed(Exception):
    """An expectation did not hold; str() is the line to print."""


class Invalid(Exception):
    """The document, or the means to check it, is unusable; str() is the line to print."""


# --- the expectation document (schema version 2; durations in seconds) -----------------------------


def _at_least(minimum: float, maximum: float = math.inf) -> dict[str, float]:
    return {"min": minimum, "max": maximum}


URL = {"url": True}

# consul-dataplane serves the sidecar's Envoy statistics, merged with its own, on the pod's Prometheus port
# (consul-k8s getMetricsPorts names it `prometheus`, chart default 20200; consul-dataplane
# internal/bootstrap generateListenerConfig routes `path: /metrics` to /stats/prometheus).
DATAPLANE = "consul-dataplane"
METRICS_PORT_NAME = "prometheus"
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Kubernetes:
    """The API server, as a pod reaches it with its service account."""

    url: str = field(default="https://kubernetes.default.svc", metadata=URL)
    token_file: str | None = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_file: str | None = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@dataclass(frozen=True)
class Version:
    """One version of a service: the pods its labels select."""

    version: str  # the name it goes by: the Deployment (api-v2)
    labels: Mapping[str, str]  # a pod of the version carries every one of these
    role: Literal["running", "retiring"]  # retiring: the step deletes it after this check
    plaintext: Verdict | None = None  # what its pods do with plain text; None: not probed
    answers_as: str | None = None  # the NAME it answers with through the gateway; None: not looked for


Protocol = Literal["http", "http2", "grpc", "tcp"]


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service and the versions behind it."""

    service: str
    namespace: str
    port: int = field(metadata=_at_least(1, 65535))  # the pods' port (the Service's target port)
    selector: Mapping[str, str]  # the Service's selector
    versions: tuple[Version, ...] = ()
    protocol: Protocol = "http"  # how a plain-text probe speaks to its pods (probe_plaintext)


@dataclass(frozen=True)
class Gateway:
    url: str = field(metadata=URL)
    exposed: str  # the service the gateway routes `/` to: the top level of each answer
    reached: tuple[str, ...]  # the services a request meets (the exposed one and its upstreams)
    requests: int = field(default=20, metadata=_at_least(1))  # N requests, one fresh connection each
    tolerance: float = field(default=0.4, metadata=_at_least(0, 1))  # k versions: each >= 1/k - tolerance
    # A host a caller dials that does not start with the name it counts as: a destination outside the
    # mesh dialed by its own address (host -> the destination's name among `reached`).
    hosts: Mapping[str, str] | None = None
    # fake-service: every answer is its JSON, every hop named. any: a team's own service, whose answers
    # are its own: the route counts as passing when its success rate (no 5xx) meets Traffic's.
    answers: Literal["fake-service", "any"] = "fake-service"


@dataclass(frozen=True)
class PostTimeouts:
    request: float = field(default=5.0, metadata=_at_least(0.001))  # one request or API call
    plaintext: float = field(default=2.0, metadata=_at_least(0.001))  # one probe: connect, first bytes or close
    settle: float = field(default=15.0, metadata=_at_least(0))  # keep retrying a failed round this long
    total: float = field(default=30.0, metadata=_at_least(0.001))  # the whole postcheck


@dataclass(frozen=True)
class Upstream:
    """A service whose callers' sidecars prove the step: what they count for it before and after."""

    service: str  # its Consul name (consul_destination_service)
    protocol: Protocol = "http"  # http, http2, grpc: requests and their 5xx; tcp: connections only
    callers: tuple[Workload, ...] = ()  # the callers with a sidecar: their pods' statistics
    # Callers that dial its virtual address now: none of their connections may go to its pod IPs
    # (the passthrough cluster dialedDirectly gives them), the `.service.consul` way.
    moved: tuple[Workload, ...] = ()


@dataclass(frozen=True)
class Traffic:
    """Success over the callers' own requests, in the terms of progressive delivery (Flagger's request
    success rate, Argo Rollouts' count and interval): at least `success_rate` of the requests made in
    the window, judged once there are `min_requests` of them; fewer is too little to judge (said)."""

    success_rate: float = field(default=0.99, metadata=_at_least(0, 1))
    min_requests: int = field(default=1, metadata=_at_least(1))
    window: float = field(default=10.0, metadata=_at_least(0))  # seconds between the two readings


@dataclass(frozen=True)
class Postcheck:
    services: tuple[Service, ...]
    gateway: Gateway | None = None
    kubernetes: Kubernetes = Kubernetes()
    timeouts: PostTimeouts = PostTimeouts()
    upstreams: tuple[Upstream, ...] = ()
    traffic: Traffic = Traffic()


@dataclass(frozen=True)
class Workload:
    """Pods of a service, by the Service's selector."""

    service: str
    namespace: str
    selector: Mapping[str, str]


@dataclass(frozen=True)
class Tightened:
    """A service the step makes refuse plain text."""

    service: str
    namespace: str
    port: int = field(metadata=_at_least(1, 65535))
    selector: Mapping[str, str]
    # A caller with a sidecar counts too: the step leaves it no mTLS path (no dialedDirectly while
    # it still dials the pod IPs), so its plain text would be refused like any other.
    count_mesh_callers: bool = False
    mesh_callers: tuple[Workload, ...] = ()  # their sidecars' open passthrough connections bound the live ones
    # Its mTLS chain is Envoy's HTTP connection manager (protocol http, http2, grpc): the statistics then
    # count the permissive chain's open connections apart. False (tcp): they cannot, and are not read.
    http: bool = True


@dataclass(frozen=True)
class Signal:
    """Where Consul's sidecars say who called: the access log and the statistics of consul-dataplane."""

    format: Mapping[str, str]  # ProxyDefaults accessLogs.jsonFormat: key -> Envoy command operator
    container: str = DATAPLANE
    inbound_cluster: str = "local_app"  # Envoy's cluster of the local app: inbound traffic only
    outbound_cluster: str = "original-destination"  # the outbound catch-all to destinations outside the mesh
    public_listener_port: int = field(default=20000, metadata=_at_least(1, 65535))
    metrics_port: str = METRICS_PORT_NAME  # the sidecar container's port name (consul-k8s getMetricsPorts)
    metrics_path: str = METRICS_PATH
    ignore_namespaces: tuple[str, ...] = ("mesh-checks",)  # the checks' own probes
    mesh_annotation: str = "consul.hashicorp.com/connect-inject-status"


@dataclass(frozen=True)
class MeshObject:
    namespace: str
    name: str


@dataclass(frozen=True)
class PreTimeouts:
    request: float = field(default=5.0, metadata=_at_least(0.001))  # one API call, probe or scrape
    total: float = field(default=10.0, metadata=_at_least(0.001))  # the whole precheck


@dataclass(frozen=True)
class Precheck:
    step: str
    signal: Signal
    services: tuple[Tightened, ...] = ()
    # The step closes the Mesh (meshDestinationsOnly): these sidecars must call nothing outside it,
    # unless the Mesh object says it is closed already.
    outbound: tuple[Workload, ...] = ()
    mesh: MeshObject | None = None
    window_seconds: int = field(default=900, metadata=_at_least(1))
    kubernetes: Kubernetes = Kubernetes()
    timeouts: PreTimeouts = PreTimeouts()


@dataclass(frozen=True)
class Expectation:
    version: int
    phase: str  # printed before the summary line
    postcheck: Postcheck | None = None
    precheck: Precheck | None = None


def default(cls: type[Any], name: str) -> Any:
    """A field's default: where the stack's config takes its own defaults from."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def to_document(obj: object) -> Any:
    """A schema object as JSON data; a field left at a None default is left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_document(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (getattr(obj, f.name) is None and f.default is None)
        }
    if isinstance(obj, tuple | list):
        return [to_document(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_document(v) for k, v in obj.items()}
    return obj


def parse_expectation(doc: object) -> Expectation:
    """The document, checked field by field against the dataclasses; Invalid names the first bad field."""
    if isinstance(doc, dict) and doc.get("version") != SCHEMA_VERSION:
        raise Invalid(f"expectation document.version: expected {SCHEMA_VERSION}, got {_short(doc.get('version'))}")
    return _parse(Expectation, doc, "document")


def _parse(cls: type[Any], data: object, path: str) -> Any:
    if not isinstance(data, dict):
        raise Invalid(f"expectation {path}: expected an object, got {_short(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise Invalid(f"expectation {path}.{unknown[0]}: not a field here; the fields: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise Invalid(f"expectation {path}.{name}: missing")
            continue
        if data[name] is None and type(None) in typing.get_args(hints[name]):
            values[name] = None
            continue
        values[name] = _value(hints[name], data[name], f"{path}.{name}", f.metadata)
    return cls(**values)


def _value(tp: Any, value: object, path: str, meta: Mapping[str, Any]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in args if a is not type(None)), value, path, meta)
    if origin is Literal:
        if value not in args:
            raise Invalid(f"expectation {path}: expected one of {', '.join(map(str, args))}, got {_short(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise Invalid(f"expectation {path}: expected a list, got {_short(value)}")
        return tuple(_value(args[0], v, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k for k, v in value.items()
        ):
            raise Invalid(f"expectation {path}: expected an object of strings, got {_short(value)}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _parse(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise Invalid(f"expectation {path}: expected true or false, got {_short(value)}")
        return value
    if tp in (int, float):
        low, high = meta.get("min", -math.inf), meta.get("max", math.inf)
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or (tp is int and not isinstance(number, int)) or not low <= number <= high:
            kind = "an integer" if tp is int else "a number"
            where = f" in [{low:g}, {high:g}]" if high < math.inf else (f" >= {low:g}" if low > -math.inf else "")
            raise Invalid(f"expectation {path}: expected {kind}{where}, got {_short(value)}")
        return number if tp is int else float(number)
    if not isinstance(value, str) or not value:
        raise Invalid(f"expectation {path}: expected a non-empty string, got {_short(value)}")
    if meta.get("url"):
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"expectation {path}: expected an http(s) URL, got {_short(value)}")
    return value


# --- small helpers ----------------------------------------------------------------------------------


def _short(value: object, limit: int = 80) -> str:
    """A value for a message: strings quoted, anything else as JSON; long ones cut."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return json.dumps(text) if isinstance(value, str) else text


def fmt_set(names: Iterable[str]) -> str:
    return "{" + ", ".join(json.dumps(n) for n in sorted(names)) + "}"


def fmt_counts(counts: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{json.dumps(n)}: {c}" for n, c in sorted(counts.items())) + "}"


def _secs(value: float) -> str:
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listing(items: Sequence[str], most: int = 3) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


class Deadline:
    """The time left for one check, so that no wait goes past its budget."""

    def __init__(self, check: str, seconds: float, clock: Callable[[], float]) -> None:
        self.check, self.seconds, self.clock = check, seconds, clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def cap(self, timeout: float, doing: str) -> float:
        """`timeout`, shortened to what is left; fails once nothing is."""
        left = self.left()
        if left <= 0:
            raise self.spent(doing)
        return min(timeout, left)

    def spent(self, doing: str) -> CheckFailed:
        return CheckFailed(f"{self.check}: timed out after {_secs(self.seconds)} (its whole budget) {doing}")

    def timed_out(self, check: str, waited: float, doing: str) -> CheckFailed:
        """A wait of `waited` seconds ran out: the budget's failure if that was all that was left."""
        if self.left() <= 0.001:
            return self.spent(doing)
        return CheckFailed(f"{check}: timed out after {_secs(waited)} {doing}")


def _describe_oserror(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP response ({type(exc).__name__})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# --- the Kubernetes API -------------------------------------------------------------------------------


class KubeError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """The Kubernetes API over urllib, with the pod's service account token; every call within a budget."""

    def __init__(self, cfg: Kubernetes, timeout: float, deadline: Deadline) -> None:
        self.base = cfg.url.rstrip("/")
        self.timeout, self.deadline = timeout, deadline
        self.token = ""
        if cfg.token_file:
            try:
                with open(cfg.token_file, encoding="utf-8") as f:
                    self.token = f.read().strip()
            except OSError as exc:
                raise Invalid(
                    f"{deadline.check} kubernetes: cannot read the token {cfg.token_file}: {exc.strerror}"
                ) from None
        context: ssl.SSLContext | None = None
        if self.base.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else None
            except (OSError, ssl.SSLError) as exc:
                raise Invalid(f"{deadline.check} kubernetes: cannot load the CA {cfg.ca_file}: {exc}") from None
        # Straight to the API server: no HTTP(S)_PROXY from the environment.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def get(self, path: str, query: Mapping[str, str | int], doing: str) -> bytes:
        """One GET; a timeout fails the check, an API error means it cannot check."""
        waited = self.deadline.cap(self.timeout, doing)
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}" if query else f"{self.base}{path}"
        headers = {"Accept": "application/json, */*", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with self.opener.open(urllib.request.Request(url, headers=headers), timeout=waited) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise KubeError(
                exc.code, f"{doing} failed: GET {path}: HTTP {exc.code} {_status_message(exc.read())}"
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self.deadline.timed_out(self.deadline.check, waited, doing) from None
            reason = _describe_oserror(exc.reason) if isinstance(exc.reason, OSError) else exc.reason
            raise KubeError(None, f"{doing} failed: GET {path}: {reason}") from None
        except TimeoutError:
            raise self.deadline.timed_out(self.deadline.check, waited, doing) from None

    def items(self, path: str, query: Mapping[str, str | int], doing: str) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.get(path, query, doing))
        except ValueError as exc:
            raise KubeError(None, f"{doing} failed: not JSON ({exc})") from None
        items = doc.get("items") if isinstance(doc, dict) else None
        return [i for i in items or [] if isinstance(i, dict)]

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods"
        sel = label_selector(selector)
        return self.items(path, {"labelSelector": sel}, f"listing the pods {sel} in {namespace}")

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{urllib.parse.quote(namespace)}/endpointslices"
        query = {"labelSelector": f"kubernetes.io/service-name={service}"}
        return self.items(path, query, f"listing the EndpointSlices of Service {namespace}/{service}")

    def pod_log(self, namespace: str, pod: str, container: str, since_seconds: int) -> str:
        """The container's log for the window, each line after the kubelet's RFC 3339 timestamp."""
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(pod)}/log"
        query = {"container": container, "sinceSeconds": since_seconds, "timestamps": "true"}
        return self.get(path, query, f"reading the {container} log of {namespace}/{pod}").decode(errors="replace")

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]] | None:
        """Pods (any namespace) whose status.podIP is `ip`; None when not allowed to list them."""
        try:
            return self.items(
                "/api/v1/pods", {"fieldSelector": f"status.podIP={ip}"}, f"looking up the pod with address {ip}"
            )
        except KubeError as exc:
            if exc.status in (401, 403):
                return None
            raise

    def mesh(self, obj: MeshObject) -> dict[str, Any]:
        path = f"/apis/consul.hashicorp.com/v1alpha1/namespaces/{urllib.parse.quote(obj.namespace)}/meshes/{obj.name}"
        try:
            return json.loads(self.get(path, {}, f"reading the Mesh {obj.namespace}/{obj.name}"))
        except ValueError as exc:
            raise KubeError(None, f"reading the Mesh failed: not JSON ({exc})") from None


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return str(status.get("message") or status.get("reason") or "")
    except (ValueError, AttributeError):
        return _short(body.decode(errors="replace"))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _pod_ref(pod: Mapping[str, Any]) -> str:
    return f"{_meta(pod).get('namespace', '?')}/{_meta(pod).get('name', '?')}"


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    spec = pod.get("spec") or {}
    return next(
        (c for key in ("containers", "initContainers") for c in spec.get(key) or [] if c.get("name") == name), None
    )


def _is_running(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and not _meta(pod).get("deletionTimestamp")


def _started(pod: Mapping[str, Any], container: str) -> float | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return _timestamp(((status.get("state") or {}).get("running") or {}).get("startedAt"))
    return None


def _timestamp(text: object) -> float | None:
    """An RFC 3339 time (the API's, the kubelet's log prefix, Envoy's START_TIME) as epoch seconds."""
    if not isinstance(text, str) or not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:  # Python 3.11 takes at most microseconds
        head, _, rest = t.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        t = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return None


def matches(labels: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- plain text, as a client outside the mesh sends it --------------------------------------------------


@dataclass(frozen=True)
class Probe:
    verdict: Verdict
    detail: str  # what was seen: "HTTP 200", "connection reset", ...


@dataclass(frozen=True)
class Exchange:
    data: bytes  # what the server sent
    ended: Literal["enough", "closed", "reset", "reset before sending", "silent"]


def _exchange(
    host: str, port: int, timeout: float, payload: bytes, enough: Callable[[bytes], bool], silence: bool = False
) -> Exchange | None:
    """`payload` on a fresh TCP connection, then what the server sends until `enough` of it, a close or a
    reset. None: the connection was refused. `silence`: a server that sends nothing in time ends the
    exchange ("silent") instead of raising TimeoutError; a connection that cannot be made always raises."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return None
    data = b""
    with sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return Exchange(b"", "reset before sending")
        try:
            while not enough(data):
                chunk = sock.recv(4096)
                if not chunk:
                    return Exchange(data, "closed")
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            return Exchange(data, "reset")
        except TimeoutError:
            if not silence:
                raise
            return Exchange(data, "silent")
    return Exchange(data, "enough")


REFUSED = Probe("refused", "connection refused")


def probe_plaintext(host: str, port: int, timeout: float) -> Probe:
    """A plain-text HTTP request on a fresh TCP connection, judged as a strict sidecar is expected to act.

    Refused: the connection is refused, or closed or reset before any HTTP response (a strict
    sidecar accepts the TCP connection, then its TLS handshake fails on plain text and Envoy
    closes). Accepted: an HTTP status line, whatever the status. Raises TimeoutError when neither
    comes in time, and OSError when the address cannot be reached at all.
    """
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = f"GET / HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
    ex = _exchange(host, port, timeout, request.encode(), lambda d: b"\r\n" in d or len(d) >= 4096)
    if ex is None:
        return REFUSED
    if ex.ended == "reset before sending":
        return Probe("refused", "connection reset before the request was sent")
    if ex.data.startswith(b"HTTP/"):
        return Probe("accepted", _status_line(ex.data))
    if ex.ended == "reset":
        return Probe("refused", "connection reset" + (f" after {len(ex.data)} non-HTTP bytes" if ex.data else ""))
    if not ex.data:
        return Probe("refused", "connection closed without a response")
    return Probe("refused", f"connection closed after {len(ex.data)} non-HTTP bytes")


# The client connection preface of HTTP/2 (RFC 9113 section 3.4) and an empty SETTINGS frame: what a
# gRPC client, a health check included, sends first on a plain-text (h2c) connection.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def probe_h2c(host: str, port: int, timeout: float) -> Probe:
    """Plain-text HTTP/2, as a gRPC client sends it. Accepted: the server's first frame is SETTINGS
    (type 4, RFC 9113 section 3.4: it must send one first). Refused: refused, closed or reset first
    (a strict sidecar's TLS handshake fails on these bytes), or any other answer."""
    ex = _exchange(host, port, timeout, H2_PREFACE, lambda d: len(d) >= 9)
    if ex is None:
        return REFUSED
    if ex.ended.startswith("reset"):
        return Probe("refused", "connection reset" + (f" after {len(ex.data)} bytes" if ex.data else ""))
    if len(ex.data) >= 9 and ex.data[3] == 4:
        return Probe("accepted", "HTTP/2 SETTINGS")
    return Probe(
        "refused", f"connection closed after {len(ex.data)} bytes" if ex.data else "connection closed without a frame"
    )


def probe_tls(host: str, port: int, timeout: float) -> Probe:
    """Whatever the protocol: does the port answer a TLS ClientHello as a TLS server? A strict
    sidecar's public listener terminates mTLS on every inbound connection (hashicorp/consul
    agent/xds/listeners.go makeInboundListener), so it answers with a TLS record (handshake or alert);
    a permissive one passes the bytes to the app (makePermissiveFilterChain), which does not. Refused:
    a TLS answer. Accepted: anything else (the app's own answer, a close, or silence)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    ex = _exchange(host, port, timeout, outgoing.read(), lambda d: len(d) >= 5, silence=True)
    if ex is None:
        return REFUSED
    if ex.ended == "silent":
        return Probe("accepted", "no TLS answer (the app kept the connection open)")
    if ex.ended.startswith("reset"):
        return Probe("accepted", "connection reset without a TLS answer")
    data = ex.data
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return Probe("refused", "a TLS server answered (the sidecar's mTLS)")
    return Probe("accepted", f"{len(data)} bytes that are not TLS" if data else "connection closed without TLS")


PROBES: Mapping[str, Callable[[str, int, float], Probe]] = {
    "http": probe_plaintext,
    "http2": probe_h2c,
    "grpc": probe_h2c,
    "tcp": probe_tls,
}


def _status_line(data: bytes) -> str:
    parts = data.split(b"\r\n", 1)[0].decode(errors="replace").split(" ", 2)
    return f"HTTP {parts[1]}" if len(parts) > 1 else parts[0]


def _probe(
    host: str, port: int, timeout: float, deadline: Deadline, check: str, what: str, protocol: str = "http"
) -> Probe:
    waited = deadline.cap(timeout, f"probing {what}")
    try:
        return PROBES[protocol](host, port, waited)
    except TimeoutError:
        raise deadline.timed_out(check, waited, f"waiting for {what} to answer or close") from None
    except OSError as exc:
        return Probe("refused", _describe_oserror(exc))


# --- postcheck: the pods behind each Service -----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    pod: str  # namespace/name, or the address when the endpoint names no pod
    address: str
    ready: bool
    version: Version | None  # None: no version of the step selects its pod


def endpoints(svc: Service, kube: Kube) -> list[Endpoint]:
    """The Service's endpoints (discovery.k8s.io/v1: the EndpointSlice controller writes one address an
    endpoint, `ready` nil meaning true), each with the version whose labels its pod carries."""
    slices = kube.endpoint_slices(svc.namespace, svc.service)
    pods = {str(_meta(p).get("name")): p for p in kube.pods(svc.namespace, svc.selector)}
    ports = {p.get("port") for s in slices for p in s.get("ports") or []}
    if slices and svc.port not in ports:
        raise CheckFailed(
            f"postcheck endpoints {svc.service}: expected Service {svc.namespace}/{svc.service} to route to port "
            f"{svc.port}, saw ports {sorted(p for p in ports if isinstance(p, int))}"
        )
    found = []
    for s in slices:
        for e in s.get("endpoints") or []:
            addresses = e.get("addresses") or []
            if not addresses:
                continue
            ref = e.get("targetRef") or {}
            pod = pods.get(str(ref.get("name"))) if ref.get("kind") == "Pod" else None
            labels = _meta(pod).get("labels") or {} if pod else {}
            version = next((v for v in svc.versions if pod and matches(labels, v.labels)), None)
            ready = (e.get("conditions") or {}).get("ready") is not False
            name = f"{svc.namespace}/{ref['name']}" if ref.get("name") else addresses[0]
            found.append(Endpoint(name, str(addresses[0]), ready, version))
    return found


@dataclass
class PodRound:
    probed: dict[str, tuple[int, str]] = field(default_factory=dict)  # version -> (pods probed, their verdict)
    retiring: Counter[str] = field(default_factory=Counter)  # version -> its pods still ready


def pods_round(post: Postcheck, kube: Kube, deadline: Deadline) -> PodRound:
    """Every service's ready pods: each version that runs has one, each probes as expected, nothing else."""
    seen = PodRound()
    for svc in post.services:
        found = endpoints(svc, kube)
        ready = [e for e in found if e.ready]
        running = [v for v in svc.versions if v.role == "running"]
        stray = [e for e in ready if e.version is None]
        if stray:
            expected = ", ".join(v.version for v in svc.versions) or "no version"
            raise CheckFailed(
                f"postcheck endpoints {svc.service}: expected only {expected} behind Service {svc.namespace}/"
                f"{svc.service}, saw {_listing([f'{e.pod} ({e.address})' for e in stray])} ready, which no version "
                "of this step selects (a version retired earlier that still answers, or another workload)"
            )
        for v in running:
            mine = [e for e in found if e.version is v]
            if not any(e.ready for e in mine):
                raise CheckFailed(
                    f"postcheck endpoints {svc.service}: expected a ready pod of {v.version} behind Service "
                    f"{svc.namespace}/{svc.service}, saw none ({_plural(len(mine), 'endpoint')} of it, "
                    f"{_plural(len(ready), 'ready endpoint')} in all)"
                )
        for v in svc.versions:
            mine = [e for e in ready if e.version is v]
            if v.role == "retiring":
                seen.retiring[v.version] += len(mine)
                continue
            if v.plaintext is None:
                continue
            wrong: list[str] = []
            for e in mine:
                probe = _probe(
                    e.address,
                    svc.port,
                    post.timeouts.plaintext,
                    deadline,
                    f"postcheck plaintext {v.version}",
                    f"{e.pod} ({e.address}:{svc.port})",
                    svc.protocol,
                )
                if probe.verdict != v.plaintext:
                    did = "accept" if probe.verdict == "accepted" else "refuse"
                    wrong.append(f"{e.pod} ({e.address}:{svc.port}) {did} it: {probe.detail}")
            if wrong:
                verb = "refuse" if v.plaintext == "refused" else "accept"
                raise CheckFailed(
                    f"postcheck plaintext {v.version}: expected every ready pod of {v.version} to {verb} plain text, "
                    f"saw {'; '.join(wrong)} ({len(wrong)} of {_plural(len(mine), 'pod')})"
                )
            seen.probed[v.version] = (len(mine), v.plaintext)
    return seen


# --- postcheck: through the gateway ----------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes


def http_get(url: str, timeout: float, limit: int = MAX_BODY) -> Answer:
    """One GET on a fresh connection, at most `limit` + 1 bytes of its body read (more than `limit`: cut);
    raises OSError subclasses (timeouts: TimeoutError)."""
    parts = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(
            "GET",
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            headers={"User-Agent": USER_AGENT, "Connection": "close", "Accept": "application/json"},
        )
        resp = conn.getresponse()
        return Answer(resp.status, resp.read(limit + 1))
    finally:
        conn.close()


@dataclass(frozen=True)
class Hop:
    service: str
    name: str
    uri: str
    code: object
    error: object


def service_of(uri: str, hosts: Mapping[str, str] | None = None) -> str:
    """The service an upstream URI addresses: the first label of its host (api.service.consul -> api),
    or the destination `hosts` names for it (api.payments.example.com -> payments-api)."""
    host = urllib.parse.urlsplit(uri if "//" in uri else f"//{uri}").hostname or uri
    return (hosts or {}).get(host) or host.split(".")[0]


def hops(
    answer: Mapping[str, Any], service: str, uri: str = "", hosts: Mapping[str, str] | None = None
) -> Iterator[Hop]:
    """Every level of a fake-service answer (v0.26.0 response/response.go): the service itself, then each
    `upstream_calls` entry (a map from the called URI to the upstream's own answer)."""
    yield Hop(service, str(answer.get("name", "")), uri, answer.get("code"), answer.get("error"))
    calls = answer.get("upstream_calls") or {}
    items = calls.items() if isinstance(calls, dict) else ((c.get("uri", ""), c) for c in calls if isinstance(c, dict))
    for key, call in items:
        if isinstance(call, dict):
            call_uri = str(call.get("uri") or key)
            yield from hops(call, service_of(call_uri, hosts), call_uri, hosts)


def gateway_round(g: Gateway, timeouts: PostTimeouts, deadline: Deadline) -> tuple[dict[str, Counter[str]], float]:
    """Sends g.requests requests; returns the names seen per service and the slowest request's time."""
    check = "postcheck gateway"
    seen: dict[str, Counter[str]] = {svc: Counter() for svc in g.reached}
    slowest = 0.0
    for i in range(1, g.requests + 1):
        where = f"(request {i} of {g.requests})"
        timeout = deadline.cap(timeouts.request, f"waiting for {g.url} {where}")
        started = deadline.clock()
        try:
            answer = http_get(g.url, timeout)
        except TimeoutError:
            raise deadline.timed_out(check, timeout, f"waiting for {g.url} {where}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise CheckFailed(
                f"{check}: expected HTTP 200 from {g.url}, saw {_describe_oserror(exc)} {where}"
            ) from None
        slowest = max(slowest, deadline.clock() - started)
        try:
            doc = json.loads(answer.body)
        except ValueError:
            doc = None
        if answer.status != 200:
            detail = (
                _failed_hop(doc, g.exposed, g.hosts)
                if isinstance(doc, dict)
                else _short(answer.body.decode(errors="replace"))
            )
            raise CheckFailed(f"{check}: expected HTTP 200 from {g.url}, saw HTTP {answer.status} {where}: {detail}")
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            body = _short(answer.body.decode(errors="replace"))
            raise CheckFailed(f"{check}: expected fake-service JSON with a name from {g.url}, saw {body} {where}")
        bad = _failed_hop(doc, g.exposed, g.hosts)
        if bad:
            raise CheckFailed(f"{check}: expected code 200 at every hop, saw {bad} {where}")
        for hop in hops(doc, g.exposed, hosts=g.hosts):
            seen.setdefault(hop.service, Counter())[hop.name] += 1
    return seen, slowest


def gateway_route_round(
    g: Gateway, timeouts: PostTimeouts, traffic: Traffic, deadline: Deadline
) -> tuple[Counter[str], float]:
    """A team's own service behind the gateway: g.requests requests, each answered by the route (its
    status, whatever it is) or failing; the route passes when the share without a 5xx or an error
    meets traffic.success_rate. Returns the statuses seen and the slowest request's time."""
    check = "postcheck gateway"
    codes: Counter[str] = Counter()
    slowest = 0.0
    for i in range(1, g.requests + 1):
        where = f"(request {i} of {g.requests})"
        timeout = deadline.cap(timeouts.request, f"waiting for {g.url} {where}")
        started = deadline.clock()
        try:
            answer = http_get(g.url, timeout)
            codes[f"HTTP {answer.status}"] += 1
        except TimeoutError:
            codes["timed out"] += 1
        except (OSError, http.client.HTTPException) as exc:
            codes[_describe_oserror(exc)] += 1
        slowest = max(slowest, deadline.clock() - started)
    good = sum(n for code, n in codes.items() if code.startswith("HTTP ") and not code.startswith("HTTP 5"))
    if good < traffic.success_rate * g.requests - 1e-9:
        raise CheckFailed(
            f"{check}: expected at least {traffic.success_rate:.0%} of {g.requests} requests to {g.url} answered "
            f"without a 5xx (the route to {g.exposed}), saw {fmt_counts(codes)}"
        )
    return codes, slowest


def _failed_hop(doc: Mapping[str, Any], exposed: str, hosts: Mapping[str, str] | None = None) -> str:
    """The first hop of an answer that failed, described; '' when every hop answered 200."""
    failed = [h for h in hops(doc, exposed, hosts=hosts) if h.error or (h.code is not None and h.code != 200)]
    if not failed:
        return ""
    h = failed[-1]  # the deepest failure is the cause; the levels above only report it
    where = f" at {h.uri}" if h.uri else ""
    error = f", error {_short(h.error)}" if h.error else ""
    name = f" ({json.dumps(h.name)})" if h.name else ""
    return f"{h.service}{name}{where} answered code {h.code}{error}"


def check_names(post: Postcheck, seen: Mapping[str, Counter[str]]) -> None:
    """Per service met: only its versions' names; each version that runs in >= 1/k - tolerance of the
    service's answers, k counting every version that may answer (a retiring one may, or may not)."""
    g = post.gateway
    assert g is not None
    by_name = {s.service: s for s in post.services}
    unknown = sorted(s for s in seen if s not in g.reached and seen[s])
    if unknown:
        svc = unknown[0]
        raise CheckFailed(
            f"postcheck upstreams: expected calls only to {fmt_set(g.reached)}, "
            f"saw calls to {svc} answering {fmt_counts(seen[svc])} in {g.requests} requests"
        )
    for name in sorted(g.reached):
        svc = by_name.get(name)
        if svc is None or not any(v.answers_as for v in svc.versions):
            continue  # names not known for this service: only its 200s count
        required = {v.answers_as for v in svc.versions if v.role == "running" and v.answers_as}
        allowed = required | {v.answers_as for v in svc.versions if v.answers_as}
        counts = seen.get(name, Counter())
        total = sum(counts.values())
        label = f"postcheck upstreams {name}"
        if set(counts) - allowed or not total:
            also = f" (or {fmt_set(allowed - required)}, retiring)" if allowed - required else ""
            raise CheckFailed(
                f"{label}: expected {fmt_set(required)}{also}, saw {fmt_counts(counts)} in {g.requests} requests"
            )
        share = max(0.0, 1.0 / len(allowed) - g.tolerance)
        least = max(1, math.ceil(share * total - 1e-9))
        short = [n for n in required if counts[n] < least]
        if short:
            each = f"each in at least {share:.0%} of {name}'s {total} answers" if share > 0 else "each at least once"
            shown = {n: counts[n] for n in sorted(allowed | set(counts))}
            raise CheckFailed(
                f"{label}: expected {fmt_set(required)} {each}, saw {fmt_counts(shown)} in {g.requests} requests"
            )


# --- postcheck: what the callers' sidecars count for each upstream ------------------------------------------

PASSTHROUGH = "passthrough~"  # the cluster of a dialedDirectly upstream's pod IPs (consul agent/xds/clusters.go)


@dataclass
class Counts:
    """One upstream's counters in one caller pod's sidecar, after Envoy's tag extraction: the cluster
    name is the first dot-segment of Consul's SNI (`api`, or `passthrough~api`), and Consul's tag
    specifiers name the upstream in `consul_destination_service` (consul-dataplane internal/bootstrap
    resourceTagSpecifiers)."""

    requests: float = 0.0  # envoy_cluster_upstream_rq_total of the mesh route
    errors: float = 0.0  # envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}
    connections: float = 0.0  # envoy_cluster_upstream_cx_total of the mesh route
    connect_failures: float = 0.0  # envoy_cluster_upstream_cx_connect_fail, every cluster of the upstream
    passthrough: float = 0.0  # envoy_cluster_upstream_cx_total of passthrough~<upstream>: pod IPs dialed


def upstream_counts(text: str, service: str) -> Counts:
    c = Counts()
    for name, labels, value in prometheus(text):
        if labels.get("consul_destination_service") != service or not name.startswith("envoy_cluster_upstream_"):
            continue
        via_pod_ips = labels.get("envoy_cluster_name", "").startswith(PASSTHROUGH)
        if name == "envoy_cluster_upstream_cx_connect_fail":
            c.connect_failures += value
        elif name == "envoy_cluster_upstream_cx_total":
            if via_pod_ips:
                c.passthrough += value
            else:
                c.connections += value
        elif via_pod_ips:
            continue
        elif name == "envoy_cluster_upstream_rq_total":
            c.requests += value
        elif name == "envoy_cluster_upstream_rq_xx" and labels.get("envoy_response_code_class") == "5":
            c.errors += value
    return c


Readings = dict[tuple[str, str, str], Counts]  # (upstream, caller, pod) -> its counts


def sidecar_metrics(
    pod: Mapping[str, Any],
    timeout: float,
    deadline: Deadline,
    check: str,
    container: str = DATAPLANE,
    port_name: str = METRICS_PORT_NAME,
    path: str = METRICS_PATH,
) -> str | None:
    """The one reader of a sidecar's statistics, whole: None when its pod has no Prometheus port
    (metrics off). One that does not answer them, or answers more than MAX_METRICS, cannot be checked."""
    sidecar = _container(pod, container) or {}
    port = next((p.get("containerPort") for p in sidecar.get("ports") or [] if p.get("name") == port_name), None)
    ip = (pod.get("status") or {}).get("podIP")
    if not isinstance(port, int) or not ip:
        return None
    url = f"http://{f'[{ip}]' if ':' in str(ip) else ip}:{port}{path}"
    waited = deadline.cap(timeout, f"reading {url}")
    failed = f"reading the statistics of {_pod_ref(pod)} at {url} failed"
    try:
        answer = http_get(url, waited, MAX_METRICS)
    except TimeoutError:
        raise deadline.timed_out(check, waited, f"reading {url}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise KubeError(None, f"{failed}: {_describe_oserror(exc)}") from None
    if answer.status != 200:
        raise KubeError(None, f"{failed}: HTTP {answer.status}")
    if len(answer.body) > MAX_METRICS:
        raise KubeError(None, f"{failed}: more than {MAX_METRICS >> 20} MiB")
    return answer.body.decode(errors="replace")


def read_upstreams(post: Postcheck, kube: Kube, deadline: Deadline) -> Readings:
    """Every caller pod's counters for each upstream, now; a pod whose sidecar serves no statistics is
    left out (metrics off), and one that cannot be read means the check cannot be made."""
    out: Readings = {}
    texts: dict[str, str | None] = {}  # pod -> its statistics, read once for every upstream
    for up in post.upstreams:
        for caller in {c.service: c for c in (*up.callers, *up.moved)}.values():
            for pod in kube.pods(caller.namespace, caller.selector):
                if not _is_running(pod):
                    continue
                ref = _pod_ref(pod)
                if ref not in texts:
                    texts[ref] = sidecar_metrics(pod, post.timeouts.request, deadline, "postcheck callers")
                text = texts[ref]
                if text is not None:
                    out[(up.service, caller.service, ref)] = upstream_counts(text, up.service)
    return out


def judge_upstreams(post: Postcheck, first: Readings, second: Readings, seconds: float) -> str:
    """The callers' requests (connections, for tcp) to each upstream between the two readings: their
    success rate, and no connection to its pod IPs from a caller that dials its virtual address now. A
    pod new since the first reading counts from zero (Envoy's counters start with it)."""
    tr = post.traffic
    said = []
    for up in post.upstreams:
        made = failed = 0.0
        for key, now in second.items():
            if key[0] != up.service or key[1] not in {c.service for c in up.callers}:
                continue
            was = first.get(key, Counts())
            if up.protocol == "tcp":
                made += max(0.0, now.connections - was.connections)
            else:
                made += max(0.0, now.requests - was.requests)
                failed += max(0.0, now.errors - was.errors)
            failed += max(0.0, now.connect_failures - was.connect_failures)
        for caller in up.moved:
            dialed = sum(
                max(0.0, now.passthrough - first.get(key, Counts()).passthrough)
                for key, now in second.items()
                if key[0] == up.service and key[1] == caller.service
            )
            if dialed:
                raise CheckFailed(
                    f"postcheck callers {up.service}: expected {caller.service} to dial {up.service}.virtual.consul "
                    f"only, saw {round(dialed)} new connection(s) to its pod IPs ({PASSTHROUGH}{up.service}, the "
                    f"{up.service}.service.consul way) in {_secs(seconds)}"
                )
        unit = "connection" if up.protocol == "tcp" else "request"
        attempts = max(made, failed)
        if attempts < tr.min_requests:
            said.append(
                f"{up.service} {round(attempts)} {unit}(s) from its callers in {_secs(seconds)}, too few to judge"
            )
            continue
        rate = 1.0 - failed / attempts
        if rate < tr.success_rate - 1e-9:
            raise CheckFailed(
                f"postcheck callers {up.service}: expected at least {tr.success_rate:.1%} of its callers' {unit}s to "
                f"succeed, saw {rate:.1%} ({round(failed)} of {round(attempts)} failed: 5xx or connect failures) in "
                f"{_secs(seconds)}"
            )
        said.append(f"{up.service} {rate:.1%} of {round(attempts)} {unit}(s) in {_secs(seconds)}")
    return "callers' sidecars: " + ", ".join(said)


def run_postcheck(
    post: Postcheck, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Rounds of (pods behind each Service, gateway) until one passes or `settle` is over; the summary."""
    t = post.timeouts
    deadline = Deadline("postcheck", t.total, clock)
    kube = Kube(post.kubernetes, t.request, deadline)
    try:
        first = read_upstreams(post, kube, deadline)
    except KubeError as exc:
        raise Invalid(f"postcheck kubernetes: {exc}") from None
    read_at = clock()
    rounds = 0
    while True:
        rounds += 1
        try:
            started = clock()
            pods = pods_round(post, kube, deadline)
            pods_time = clock() - started
            seen: dict[str, Counter[str]] = {}
            slowest = gateway_time = 0.0
            if post.gateway is not None and post.gateway.answers == "any":
                started = clock()
                codes, slowest = gateway_route_round(post.gateway, t, post.traffic, deadline)
                seen = {post.gateway.exposed: codes}
                gateway_time = clock() - started
            elif post.gateway is not None:
                started = clock()
                seen, slowest = gateway_round(post.gateway, t, deadline)
                check_names(post, seen)
                gateway_time = clock() - started
        except KubeError as exc:
            raise Invalid(f"postcheck kubernetes: {exc}") from None
        except CheckFailed as exc:
            waited = deadline.elapsed()
            if waited >= t.settle or deadline.left() <= 0:
                suffix = f" [{rounds} rounds over {_secs(waited)}]" if rounds > 1 else ""
                raise CheckFailed(f"{exc}{suffix}") from None
            sleep(min(1.0, max(0.0, t.settle - waited), max(0.0, deadline.left())))
            continue
        probed = ", ".join(f"{v} {n} {verdict}" for v, (n, verdict) in pods.probed.items()) or "none probed"
        retiring = (
            "; retiring, still ready: " + ", ".join(f"{v} {n}" for v, n in pods.retiring.items() if n)
            if any(pods.retiring.values())
            else ""
        )
        through = ""
        if post.gateway is not None:
            g = post.gateway
            names = "; ".join(f"{svc} {fmt_counts(seen.get(svc, Counter()))}" for svc in sorted(g.reached))
            through = (
                f"; {g.requests} requests through {g.url} in {_secs(gateway_time)} (slowest {_secs(slowest)}): {names}"
            )
        callers = ""
        if post.upstreams:
            sleep(max(0.0, min(post.traffic.window - (clock() - read_at), deadline.left())))
            try:
                second = read_upstreams(post, kube, deadline)
            except KubeError as exc:
                raise Invalid(f"postcheck kubernetes: {exc}") from None
            callers = "; " + judge_upstreams(post, first, second, clock() - read_at)
        return (
            f"postcheck ok: plain text on every ready pod as expected ({probed}) in {_secs(pods_time)}{retiring}"
            f"{through}{callers}; {_plural(rounds, 'round')}, {_secs(deadline.elapsed())} in all"
        )


# --- precheck: what Consul's sidecars say about their callers ----------------------------------------------

# Consul's default access-log format (hashicorp/consul agent/xds/accesslogs/accesslogs.go,
# defaultJSONFormat): the sidecars write it until the program's own format (ProxyDefaults jsonFormat)
# reached them, so records in it are read too. Only the keys the precheck reads are named here.
CONSUL_DEFAULT_FORMAT = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}
START, METHOD, UPSTREAM_HOST, CLUSTER = "%START_TIME%", "%REQ(:METHOD)%", "%UPSTREAM_HOST%", "%UPSTREAM_CLUSTER%"
LOCAL, REMOTE = "%DOWNSTREAM_LOCAL_ADDRESS%", "%DOWNSTREAM_REMOTE_ADDRESS%"
TLS, PEER = "%DOWNSTREAM_TLS_VERSION%", "%DOWNSTREAM_PEER_URI_SAN%"
READ = (START, METHOD, UPSTREAM_HOST, CLUSTER, LOCAL, REMOTE)


def _present(value: object) -> bool:
    """Envoy writes an unset operator as null in a JSON format; '-' and '' are read as unset too."""
    return value not in (None, "", "-")


@dataclass(frozen=True)
class Record:
    """One access-log record, by what it means rather than by its keys."""

    kind: Literal["plaintext", "mtls", "probe", "outbound", "other"]
    remote: str  # the caller's address, without the port
    start: str
    peer: str = ""  # mTLS: the caller's SPIFFE ID
    upstream_host: str = ""
    cluster: str = ""  # other: Envoy's cluster (<service>.<ns>.<dc>.internal.<trust domain>.consul for an upstream)


class AccessLog:
    """Reads records in the configured format (`signal.format`), or in Consul's default one.

    What tells the inbound filter chains of a tproxy sidecar apart (hashicorp/consul
    agent/xds/listeners.go): the permissive chain (makePermissiveFilterChain) is a TCP proxy to
    `local_app` matched on the service's own port, without TLS; the mTLS chain (makeInboundListener)
    terminates TLS; kubelet's probes arrive on expose-path listeners of their own ports (consul-k8s
    webhook/mesh_webhook.go overwriteProbes: 20300-20599), routed to `local_app` too when the probe is
    on the service's port. Envoy restores the destination a permissive-chain connection was sent to
    (original_dst), so its local address ends in the service's port.
    """

    def __init__(self, signal: Signal) -> None:
        by_operator = {op: key for key, op in signal.format.items()}
        missing = [op for op in (*READ, TLS) if op not in by_operator]
        if missing:
            raise Invalid(f"expectation document.precheck.signal.format: expected the operators {', '.join(missing)}")
        self.keys = {op: by_operator[op] for op in (*READ, TLS, PEER) if op in by_operator}
        self.signal = signal

    def records(self, text: str, port: int) -> Iterator[tuple[float | None, Record | None]]:
        """(the kubelet's time of the line, its record or None) for every line of a sidecar's log."""
        for line in text.splitlines():
            yield self.line(line, port)

    def line(self, line: str, port: int) -> tuple[float | None, Record | None]:
        """One line of a sidecar's log (with or without the kubelet's time in front): make discover
        (ops/discover.py) reads the logs it streams through this too, so both read a record alike."""
        stamp, _, rest = line.partition(" ")
        when = _timestamp(stamp)
        rest = line if when is None else rest
        start = rest.find("{")
        entry: object = None
        if start >= 0:
            try:
                entry = json.loads(rest[start:])
            except ValueError:
                entry = None
        return when, self.record(entry, port) if isinstance(entry, dict) else None

    def record(self, entry: Mapping[str, Any], port: int) -> Record | None:
        """`port`: the service's port on the sidecar's pod."""
        ours = self.keys[TLS] in entry
        keys = self.keys if ours else CONSUL_DEFAULT_FORMAT_BY_OPERATOR
        if keys[REMOTE] not in entry:
            return None  # another JSON line on the stream (consul-dataplane's own log, Envoy's)

        def get(op: str) -> object:
            key = keys.get(op)
            return entry.get(key) if key else None

        remote, start, cluster = remote_ip(str(get(REMOTE) or "")), str(get(START) or ""), get(CLUSTER)
        if cluster == self.signal.outbound_cluster and _present(get(UPSTREAM_HOST)):
            return Record("outbound", remote, start, upstream_host=str(get(UPSTREAM_HOST)))
        if cluster != self.signal.inbound_cluster or not remote:
            return Record("other", remote, start, cluster=str(cluster or ""))  # a mesh upstream's, on the way out
        on_port = _port(get(LOCAL)) == port
        if ours:
            if _present(get(TLS)):
                return Record("mtls", remote, start, peer=str(get(PEER) or ""))
            return Record("plaintext" if on_port else "probe", remote, start)
        # Consul's default format has no TLS field. The port tells the chains apart all the same: only
        # the permissive chain takes connections sent to the service's own port (Envoy restores it with
        # original_dst, and no mesh caller dials a permissive service's pod IPs over mTLS: dialedDirectly
        # is never on while permissive), the mTLS chain takes those sent to the proxy's port, the expose
        # paths those sent to their own.
        if on_port:
            return Record("plaintext", remote, start)
        if _port(get(LOCAL)) == self.signal.public_listener_port:
            return Record("mtls", remote, start)
        return Record("probe" if _present(get(METHOD)) else "other", remote, start)


CONSUL_DEFAULT_FORMAT_BY_OPERATOR = {op: key for key, op in CONSUL_DEFAULT_FORMAT.items()}


def _port(address: object) -> int | None:
    text = str(address or "")
    _, _, port = text.rpartition(":")
    return int(port) if port.isdigit() else None


def remote_ip(address: str) -> str:
    """'10.0.2.14:48812' -> '10.0.2.14'; '[fd00::5]:48812' -> 'fd00::5'."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host.strip("[]")


def spiffe_service(uri: str) -> str:
    """spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service> -> <service> (Consul's leaf certificates)."""
    _, _, svc = uri.rpartition("/svc/")
    return svc or uri


@dataclass
class SidecarLog:
    pod: Mapping[str, Any]
    records: list[Record]
    covered: float  # seconds of the window the returned log covers


def sidecar_logs(
    pre: Precheck, pods: Sequence[Mapping[str, Any]], port: int, kube: Kube, log: AccessLog, now: float
) -> Iterator[SidecarLog]:
    """The one reader of the sidecars' logs: the records of the window, and how much of it they cover.

    The kubelet serves the current log file only: after a rotation the log starts later than the
    window, which the returned `covered` says (the container's own start bounds it too)."""
    for pod in pods:
        meta = _meta(pod)
        text = kube.pod_log(str(meta.get("namespace")), str(meta.get("name")), pre.signal.container, pre.window_seconds)
        records, first = [], None
        for when, rec in log.records(text, port):
            first = when if first is None and when is not None else first
            if rec is not None:
                records.append(rec)
        window_start = now - pre.window_seconds
        started = _started(pod, pre.signal.container) or window_start
        begins = max(window_start, started)
        if first is not None and first > begins + 60:
            begins = first  # the kubelet's file starts later than the window (rotated) or the sidecar was quiet
        yield SidecarLog(pod, records, min(pre.window_seconds, now - begins))


def prometheus(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text format: (name, labels, value)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, labels, rest = line, {}, ""
        if "{" in line:
            name, _, tail = line.partition("{")
            body, _, rest = tail.rpartition("}")
            for part in _split_labels(body):
                k, _, v = part.partition("=")
                labels[k.strip()] = v.strip().strip('"').replace('\\"', '"').replace("\\\\", "\\")
        else:
            name, _, rest = line.partition(" ")
        try:
            yield name.strip(), labels, float(rest.split()[0])
        except (ValueError, IndexError):
            continue


def _split_labels(body: str) -> Iterator[str]:
    part, quoted, escaped = "", False, False
    for ch in body:
        if ch == "," and not quoted:
            yield part
            part = ""
            continue
        part += ch
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
    if part.strip():
        yield part


@dataclass(frozen=True)
class Stats:
    """What a sidecar's Envoy counts now (consul-dataplane serves /stats/prometheus on the pod's
    Prometheus port, /metrics; names after Envoy's tag extraction, source/common/config/well_known_names.cc)."""

    listener_active: float  # envoy_listener_downstream_cx_active of the public listener (port 20000)
    http_active: float  # envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix="public_listener"}
    outbound_active: float  # envoy_cluster_upstream_cx_active{envoy_cluster_name="original-destination"}

    @property
    def plaintext_open(self) -> int:
        """The public listener's connections that are not its HTTP connection manager's: the permissive
        chain's TCP proxy (hashicorp/consul agent/xds/listeners.go makeInboundListener and
        makePermissiveFilterChain), which Envoy logs only when they close."""
        return max(0, round(self.listener_active - self.http_active))


def sidecar_stats(pre: Precheck, pod: Mapping[str, Any], deadline: Deadline) -> Stats | None:
    """The sidecar's statistics, or None when its pod has no Prometheus port (metrics off)."""
    sig = pre.signal
    text = sidecar_metrics(
        pod,
        pre.timeouts.request,
        deadline,
        "precheck open connections",
        sig.container,
        sig.metrics_port,
        sig.metrics_path,
    )
    if text is None:
        return None
    listener = http_active = outbound = 0.0
    suffix = f"_{sig.public_listener_port}"
    for name, labels, value in prometheus(text):
        if name == "envoy_listener_downstream_cx_active" and labels.get("envoy_listener_address", "").endswith(suffix):
            listener += value
        elif (
            name == "envoy_http_downstream_cx_active"
            and labels.get("envoy_http_conn_manager_prefix") == "public_listener"
        ):
            http_active += value
        elif (
            name == "envoy_cluster_upstream_cx_active"
            and labels.get("envoy_cluster_name") == pre.signal.outbound_cluster
        ):
            outbound += value
    return Stats(listener, http_active, outbound)


def sidecar_pods(kube: Kube, workload: Workload | Tightened, container: str) -> tuple[list[dict[str, Any]], int]:
    pods = kube.pods(workload.namespace, workload.selector)
    return [
        p for p in pods if _is_running(p) and _container(p, container) and (p.get("status") or {}).get("podIP")
    ], len(pods)


@dataclass
class Caller:
    ip: str
    connections: int = 0
    last: str = ""
    services: set[str] = field(default_factory=set)
    who: str = ""  # namespace/pod, or a note on the address


@dataclass
class Reading:
    """What the precheck read of the services it examined."""

    logs: int = 0
    records: int = 0
    plaintext: int = 0
    mtls: Counter[str] = field(default_factory=Counter)  # caller service (SPIFFE) -> requests
    probes: int = 0  # kubelet's, on the expose-path listeners
    ignored: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # services that refuse plain text already
    absent: list[str] = field(default_factory=list)  # services with no pod yet
    covered: float = math.inf  # the shortest part of the window a log covered
    short: list[str] = field(default_factory=list)  # pods whose log covers less than the window
    open: dict[str, Counter[str]] = field(default_factory=dict)  # service -> pod -> plain-text connections open now
    stats: int = 0  # sidecars whose statistics were read
    no_stats: list[str] = field(default_factory=list)  # sidecars without a Prometheus port


def _examine(
    pre: Precheck,
    svc: Tightened,
    kube: Kube,
    log: AccessLog,
    deadline: Deadline,
    reading: Reading,
    by_ip: dict[str, Caller],
    now: float,
) -> list[dict[str, Any]]:
    """One service the step tightens: its sidecars' logs and statistics, unless it refuses plain text
    already (a re-run, or a step back towards it). Returns the sidecar pods read."""
    sidecars, total = sidecar_pods(kube, svc, pre.signal.container)
    if not total:
        reading.absent.append(svc.service)  # nothing of it runs yet: nobody can call it
        return []
    if not sidecars:
        raise CheckFailed(
            f"precheck callers: expected pods of {svc.service} with a {pre.signal.container} container to read "
            f"({label_selector(svc.selector)} in {svc.namespace}), saw {_plural(total, 'pod')} and none with one"
        )
    # The checks' own probes show in the log as plain text from a pod in mesh-checks: ignored below.
    verdicts = [
        _probe(
            str(p["status"]["podIP"]), svc.port, pre.timeouts.request, deadline, "precheck callers", _pod_ref(p)
        ).verdict
        for p in sidecars
    ]
    if all(v == "refused" for v in verdicts):
        reading.skipped.append(svc.service)
        return []
    for got in sidecar_logs(pre, sidecars, svc.port, kube, log, now):
        reading.logs += 1
        reading.covered = min(reading.covered, got.covered)
        if got.covered < pre.window_seconds - 60:
            reading.short.append(f"{_pod_ref(got.pod)} {got.covered:.0f} s")
        for rec in got.records:
            reading.records += 1
            if rec.kind == "mtls":
                reading.mtls[spiffe_service(rec.peer) if rec.peer else "a mesh caller"] += 1
            elif rec.kind == "probe":
                reading.probes += 1
            elif rec.kind == "plaintext":
                reading.plaintext += 1
                caller = by_ip.setdefault(rec.remote, Caller(rec.remote))
                caller.connections += 1
                caller.services.add(svc.service)
                caller.last = max(caller.last, rec.start)
    for pod in sidecars:
        stats = sidecar_stats(pre, pod, deadline) if svc.http else None
        if stats is None:
            reading.no_stats.append(f"{_pod_ref(pod)} ({'no Prometheus port' if svc.http else 'a tcp service'})")
            continue
        reading.stats += 1
        if stats.plaintext_open:
            reading.open.setdefault(svc.service, Counter())[_pod_ref(pod)] += stats.plaintext_open
    return sidecars


def name_callers(pre: Precheck, by_ip: Mapping[str, Caller], kube: Kube, reading: Reading) -> list[Caller]:
    """The callers the step would cut off, named by pod; the busiest first."""
    live: list[Caller] = []
    counted = {s.service for s in pre.services if s.count_mesh_callers}
    for ip, caller in sorted(by_ip.items()):
        pods = kube.pods_with_ip(ip)
        if pods is None:
            caller.who = f"{ip} (not allowed to list pods to name it)"
            live.append(caller)
            continue
        # Prefer pods that hold the address now; a finished pod may have had it before.
        running = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Pending")] or pods
        if any(_meta(p).get("namespace") in pre.signal.ignore_namespaces for p in running):
            reading.ignored["the checks' own probes"] += caller.connections
            continue
        in_mesh = [
            p for p in running if (_meta(p).get("annotations") or {}).get(pre.signal.mesh_annotation) == "injected"
        ]
        if in_mesh and len(in_mesh) == len(running) and not caller.services & counted:
            reading.ignored["callers in the mesh"] += caller.connections
            continue
        if not running:
            caller.who = f"{ip} (no pod has this address)"
        elif all((p.get("spec") or {}).get("hostNetwork") for p in running):
            caller.who = f"{ip} (a node's address: a host-network pod, or traffic kube-proxy forwarded from the node)"
        else:
            caller.who = f"{_listing([_pod_ref(p) for p in running])} ({ip})"
        live.append(caller)
    live.sort(key=lambda c: (-c.connections, c.ip))
    return live


def mesh_closed_already(pre: Precheck, kube: Kube) -> bool:
    if pre.mesh is None:
        return False
    mesh = kube.mesh(pre.mesh)
    return bool(((mesh.get("spec") or {}).get("transparentProxy") or {}).get("meshDestinationsOnly"))


def find_outside_destinations(
    pre: Precheck, kube: Kube, log: AccessLog, deadline: Deadline, now: float
) -> tuple[list[str], int]:
    """Calls from the mesh to destinations outside it, logged or open now, per pod; the busiest first."""
    seen: Counter[str] = Counter()
    read = 0
    for workload in pre.outbound:
        sidecars, _ = sidecar_pods(kube, workload, pre.signal.container)
        for got in sidecar_logs(pre, sidecars, 0, kube, log, now):
            read += 1
            for rec in got.records:
                if rec.kind == "outbound":
                    seen[f"{_pod_ref(got.pod)} -> {rec.upstream_host}"] += 1
        for pod in sidecars:
            stats = sidecar_stats(pre, pod, deadline)
            if stats is not None and stats.outbound_active:
                seen[f"{_pod_ref(pod)} -> outside the mesh, open now"] += round(stats.outbound_active)
    return [f"{what}: {_plural(n, 'connection')}" for what, n in seen.most_common()], read


def run_precheck(
    pre: Precheck, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
) -> str:
    deadline = Deadline("precheck", pre.timeouts.total, clock)
    if not pre.services and not pre.outbound:
        return f"precheck ok: {pre.step} tightens no service's plain-text access; nothing to read"
    kube = Kube(pre.kubernetes, pre.timeouts.request, deadline)
    log = AccessLog(pre.signal)
    now = wall()
    closing = ""
    try:
        if pre.outbound and not mesh_closed_already(pre, kube):
            outside, read = find_outside_destinations(pre, kube, log, deadline, now)
            if outside:
                raise CheckFailed(
                    "precheck destinations: expected no call from the mesh to a destination outside it before "
                    f"{pre.step} closes the Mesh, saw {'; '.join(outside)} (in the last {pre.window_seconds} s); "
                    "once it closes only a terminating gateway serves such a call: declare the host in the caller's "
                    "services[i].destinations and dial it at <name>.virtual.consul, or keep a service held back"
                )
            closing = (
                f"no call from the mesh to a destination outside it in the last {pre.window_seconds} s "
                f"or open now ({_plural(read, 'sidecar log')}); "
            )
        reading = Reading()
        by_ip: dict[str, Caller] = {}
        examined = [svc for svc in pre.services if _examine(pre, svc, kube, log, deadline, reading, by_ip, now)]
        callers = name_callers(pre, by_ip, kube, reading)
        bound = {svc.service: _mesh_bound(pre, svc, kube, deadline) for svc in examined}
    except KubeError as exc:
        raise Invalid(f"precheck kubernetes: {exc}") from None
    if not examined:
        why = [f"plain text refused already by {', '.join(reading.skipped)}"] if reading.skipped else []
        why += [f"no pod yet of {', '.join(reading.absent)}"] if reading.absent else []
        tightens = f"{'; '.join(why)}; {pre.step} tightens nothing there; " if why else ""
        return f"precheck ok: {closing}{tightens}{_secs(deadline.elapsed())}"
    names = ", ".join(s.service for s in examined)
    window = _window(pre, reading)
    if callers:
        listed = "; ".join(
            f"{c.who} -> {', '.join(sorted(c.services))}: {_plural(c.connections, 'plain-text connection')}, "
            f"last {c.last or 'time unknown'}"
            for c in callers
        )
        raise CheckFailed(
            f"precheck callers: expected no plain-text caller outside the mesh of {names} before {pre.step}, "
            f"saw {listed} ({window})"
        )
    for svc in examined:
        _open_connections(pre, svc, reading.open.get(svc.service, Counter()), bound[svc.service])
    return f"precheck ok: {closing}{_summary(reading, names, window)}; {_secs(deadline.elapsed())}"


def _window(pre: Precheck, reading: Reading) -> str:
    """The part of the window the logs read cover."""
    if reading.covered >= pre.window_seconds - 60:
        return f"in the last {pre.window_seconds} s"
    return (
        f"in the last {reading.covered:.0f} s only (logs that start later than the window, as the kubelet "
        f"serves the current file only: {_listing(reading.short)})"
    )


def _open_connections(pre: Precheck, svc: Tightened, opened: Mapping[str, int], bound: int) -> None:
    """More plain-text connections open on the service's pods than its callers in the mesh can hold."""
    if sum(opened.values()) <= bound:
        return
    who = (
        "no caller in the mesh keeps a path"
        if svc.count_mesh_callers
        else f"its callers in the mesh hold at most {_plural(bound, 'passthrough connection')}"
    )
    seen = ", ".join(f"{n} open on {pod}" for pod, n in sorted(opened.items()))
    raise CheckFailed(
        f"precheck open connections: expected no plain-text connection to {svc.service} open now that the mesh "
        f"cannot account for before {pre.step} ({who}), saw {seen} (Envoy logs such a connection only when it "
        "closes, so its caller is not named)"
    )


def _summary(reading: Reading, names: str, window: str) -> str:
    mtls = ", ".join(f"{n} from {who}" for who, n in sorted(reading.mtls.items()))
    ignored = ", ".join(f"{n} from {what}" for what, n in sorted(reading.ignored.items()))
    open_now = sum(sum(c.values()) for c in reading.open.values())
    stats = f"{_plural(open_now, 'plain-text connection')} open now (statistics of {_plural(reading.stats, 'sidecar')})"
    if reading.no_stats:
        stats += f"; open connections not read on {_listing(reading.no_stats)}"
    skipped = f"; plain text refused already by {', '.join(reading.skipped)}" if reading.skipped else ""
    records = (
        f"{_plural(reading.logs, 'sidecar log')}, {_plural(reading.records, 'access-log record')}: "
        f"{reading.plaintext} plain text, {sum(reading.mtls.values())} mTLS{' (' + mtls + ')' if mtls else ''}, "
        f"{reading.probes} kubelet probes{'; ignored ' + ignored if ignored else ''}"
    )
    return f"no plain-text caller outside the mesh of {names} {window} ({records}); {stats}{skipped}"


def _mesh_bound(pre: Precheck, svc: Tightened, kube: Kube, deadline: Deadline) -> int:
    """How many plain-text connections the service's callers in the mesh may hold open: their sidecars'
    open passthrough connections (to any destination: an upper bound); none when none keeps a path."""
    if svc.count_mesh_callers:
        return 0
    total = 0.0
    for caller in svc.mesh_callers:
        sidecars, _ = sidecar_pods(kube, caller, pre.signal.container)
        for pod in sidecars:
            stats = sidecar_stats(pre, pod, deadline)
            total += stats.outbound_active if stats else math.inf
    return int(min(total, 1 << 30))


# --- entry point -------------------------------------------------------------------------------------


def load_document(path: str | None, env: Mapping[str, str]) -> object:
    where = path or env.get("MESH_CHECK_EXPECTATION_FILE")
    try:
        if path is None and env.get("MESH_CHECK_EXPECTATION"):
            return json.loads(env["MESH_CHECK_EXPECTATION"])
        if where:
            with open(where, encoding="utf-8") as f:
                return json.load(f)
    except OSError as exc:
        raise Invalid(f"expectation: cannot read {where}: {exc.strerror}") from None
    except ValueError as exc:
        raise Invalid(f"expectation: not JSON ({exc})") from None
    raise Invalid(
        "expectation: none given (--expectation FILE, $MESH_CHECK_EXPECTATION or $MESH_CHECK_EXPECTATION_FILE)"
    )


def _emit(line: str, out: TextIO, env: Mapping[str, str]) -> None:
    line = " ".join(line.split())  # one line, whatever a message held
    out.write(line + "\n")
    out.flush()
    termination = env.get("MESH_CHECK_TERMINATION_LOG", "/dev/termination-log")
    if termination and os.path.exists(termination):
        try:
            with open(termination, "w", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            pass


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    env = os.environ if env is None else env
    stream: TextIO = sys.stdout if out is None else out
    parser = argparse.ArgumentParser(prog="mesh_check.py", description="Check one step of the mesh migration.")
    parser.add_argument("check", choices=("postcheck", "precheck"))
    parser.add_argument("--expectation", help="the expectation JSON file")
    args = parser.parse_args(argv)
    try:
        exp = parse_expectation(load_document(args.expectation, env))
        if args.check == "postcheck":
            if exp.postcheck is None:
                raise Invalid("expectation document.postcheck: missing")
            line = run_postcheck(exp.postcheck, clock, sleep)
        else:
            if exp.precheck is None:
                raise Invalid("expectation document.precheck: missing")
            line = run_precheck(exp.precheck, clock)
    except CheckFailed as exc:
        _emit(str(exc), stream, env)
        return EXIT_FAILED
    except Invalid as exc:
        _emit(f"cannot check: {exc}", stream, env)
        return EXIT_INVALID
    _emit(f"[{exp.phase}] {line}", stream, env)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

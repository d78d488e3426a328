#!/usr/bin/env python3
"""The in-cluster check of one migration step (issue 12). Python standard library only, one file.

It runs in a Job in namespace `mesh-checks`, outside the mesh, from a ConfigMap, in a pinned stock
Python image (checks/expectations.py: IMAGE):

    python3 mesh_check.py postcheck [--expectation FILE]
    python3 mesh_check.py precheck  [--expectation FILE]

The whole expectation is one JSON document (schema: checks/expectations.py, which builds it), read
from --expectation FILE, else from $MESH_CHECK_EXPECTATION (the JSON text), else from the file named
by $MESH_CHECK_EXPECTATION_FILE.

postcheck, after an `up`: N requests through the API gateway must all succeed (HTTP 200, code 200
at every hop of fake-service's answer), and the names met at every level must be exactly the ones
expected for each service (a service with two running versions: both seen, each in at least
1/k - tolerance of that service's answers). Then a plain-text request to each service's address
must be refused where the service is strict now (connection refused, or closed/reset without an
HTTP response) and answered (any HTTP response) where it still accepts plain text. The checks are
repeated until they pass or `settle` seconds have gone by, since Envoy takes a moment to apply new
config; the last failure is the one reported.

precheck, before a step that tightens enforcement: for each service being tightened, reads the
Envoy access log of every sidecar (`consul-dataplane` container) through the Kubernetes API for the
last `window_seconds`, keeps plain-text inbound connections (cluster `local_app`, no SNI) and
refuses the step when a caller outside the mesh made one, naming the caller (namespace/pod, or the
address) and the service.

Output: exactly one line on stdout, the summary with timings when every expectation held (exit 0),
else the failed expectation's name, what it expected and what it saw (exit 1). An expectation that
cannot be read, or a Kubernetes API that cannot be used, exits 2, also with one line. The line is
also written to the container's termination message (/dev/termination-log) when that file exists.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

SCHEMA_VERSION = 1
USER_AGENT = "mesh-check/1"
MAX_BODY = 1 << 20  # fake-service answers are a few KiB
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

Verdict = Literal["accepted", "refused"]


class CheckFailed(Exception):
    """An expectation did not hold; str() is the line to print."""


class Invalid(Exception):
    """The expectation document, or the means to check it, is unusable; str() is the line to print."""


# --- the expectation document ---------------------------------------------------------------------


@dataclass(frozen=True)
class Gateway:
    url: str
    requests: int
    tolerance: float
    exposed: str  # the service the gateway routes `/` to: the top level of each answer
    names: Mapping[str, tuple[str, ...]]  # service -> the NAMEs its running versions answer with


@dataclass(frozen=True)
class Plaintext:
    service: str
    url: str
    expect: Verdict
    attempts: int


@dataclass(frozen=True)
class PostTimeouts:
    request: float  # one request through the gateway
    plaintext: float  # one plain-text probe: connect, then the first bytes or the close
    settle: float  # keep retrying a failed round this long
    total: float  # the whole postcheck


@dataclass(frozen=True)
class Postcheck:
    gateway: Gateway
    plaintext: tuple[Plaintext, ...]
    timeouts: PostTimeouts


@dataclass(frozen=True)
class Tightened:
    service: str
    namespace: str
    selector: str  # label selector of the service's pods
    # Whether a caller with a sidecar counts: it does when the step gives it no mTLS path to this
    # service (no dialedDirectly while it still dials the pod IP); None: the signal's default.
    count_mesh_callers: bool | None = None
    # The service's address for a plain-text probe: a service that refuses plain text already is
    # not tightened by this step, and its log is not read (the expectation depends on the target
    # phases only, so re-running a step changes nothing).
    probe_url: str | None = None


@dataclass(frozen=True)
class Signal:
    """How to read the caller signal: Consul's Envoy access log, from the sidecar container's log."""

    container: str = "consul-dataplane"
    inbound_cluster: str = "local_app"  # Envoy cluster of the local app: inbound traffic only
    # The outbound listener's catch-all chain to destinations outside the mesh (hashicorp/consul
    # agent/xds/listeners.go: the OriginalDestinationClusterName filter chain, access-logged, added
    # only while the Mesh allows non-mesh destinations).
    outbound_cluster: str = "original-destination"
    ignore_namespaces: tuple[str, ...] = ("mesh-checks",)  # the checks' own plain-text probes
    count_mesh_callers: bool = False  # callers with a sidecar switch to mTLS; see README
    mesh_annotation: str = "consul.hashicorp.com/connect-inject-status"


@dataclass(frozen=True)
class KubeConfig:
    url: str = "https://kubernetes.default.svc"
    token_file: str | None = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_file: str | None = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@dataclass(frozen=True)
class PreTimeouts:
    request: float  # one Kubernetes API call
    total: float  # the whole precheck


@dataclass(frozen=True)
class Precheck:
    step: str
    services: tuple[Tightened, ...]
    window_seconds: int
    signal: Signal
    kubernetes: KubeConfig
    timeouts: PreTimeouts
    # A step that closes the Mesh (meshDestinationsOnly): these services' sidecars must have made no
    # call to a destination outside the mesh, which the step would cut off.
    outbound: tuple[Tightened, ...] = ()
    # The Mesh config entry's object (namespace, name): when it allows mesh destinations only
    # already, the Mesh is not closed by this step and nothing outbound is read.
    mesh: tuple[str, str] | None = None


@dataclass(frozen=True)
class Expectation:
    phase: str
    postcheck: Postcheck | None
    precheck: Precheck | None


class _Reader:
    """Typed access to one JSON object, naming the path of whatever is wrong."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise Invalid(f"expectation {path}: expected an object, got {_short(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def _get(self, key: str, default: object) -> object:
        if key not in self.data:
            if default is _REQUIRED:
                raise Invalid(f"expectation {self.path}.{key}: missing")
            return default
        return self.data[key]

    def _bad(self, key: str, want: str) -> Invalid:
        return Invalid(f"expectation {self.path}.{key}: expected {want}, got {_short(self.data[key])}")

    def text(self, key: str, default: object = None) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is not None and (not isinstance(value, str) or not value):
            raise self._bad(key, "a non-empty string or null")
        return value

    def integer(self, key: str, default: object = None, minimum: int = 1) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"an integer >= {minimum}")
        return value

    def number(self, key: str, default: object = None, minimum: float = 0.0, maximum: float = math.inf) -> float:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= maximum:
            raise self._bad(key, f"a number in [{minimum}, {maximum}]")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def sub(self, key: str, default: object = None) -> _Reader:
        return _Reader(self._get(key, _REQUIRED if default is None else default), f"{self.path}.{key}")

    def items(self, key: str, default: object = None) -> list[Any]:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value

    def texts(self, key: str, default: object = None) -> tuple[str, ...]:
        items = self.items(key, default)
        if not all(isinstance(s, str) and s for s in items):
            raise self._bad(key, "a list of non-empty strings")
        return tuple(items)


_REQUIRED = object()


def _check_url(url: str, path: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"expectation {path}: expected an http(s) URL, got {_short(url)}")
    return url


def parse_expectation(doc: object) -> Expectation:
    """The expectation document, checked field by field; Invalid names the first bad field."""
    root = _Reader(doc, "document")
    version = root.integer("version")
    if version != SCHEMA_VERSION:
        raise Invalid(f"expectation document.version: expected {SCHEMA_VERSION}, got {version}")
    phase = root.text("phase")
    post = _parse_postcheck(root.sub("postcheck")) if root.data.get("postcheck") is not None else None
    pre = _parse_precheck(root.sub("precheck")) if root.data.get("precheck") is not None else None
    return Expectation(phase=phase, postcheck=post, precheck=pre)


def _parse_postcheck(r: _Reader) -> Postcheck:
    g = r.sub("gateway")
    names_r = g.sub("names")
    names = {svc: names_r.texts(svc) for svc in names_r.data}
    exposed = g.text("exposed")
    if exposed not in names or any(not n for n in names.values()):
        raise Invalid(f"expectation {g.path}.names: expected at least one name for every service and for {exposed!r}")
    gateway = Gateway(
        url=_check_url(g.text("url"), f"{g.path}.url"),
        requests=g.integer("requests", 20),
        tolerance=g.number("tolerance", 0.4, 0.0, 1.0),
        exposed=exposed,
        names=names,
    )
    probes: list[Plaintext] = []
    for i, item in enumerate(r.items("plaintext", [])):
        p = _Reader(item, f"{r.path}.plaintext[{i}]")
        expect = p.text("expect")
        if expect not in ("accepted", "refused"):
            raise Invalid(f"expectation {p.path}.expect: expected accepted or refused, got {_short(expect)}")
        probes.append(
            Plaintext(
                service=p.text("service"),
                url=_check_url(p.text("url"), f"{p.path}.url"),
                expect="accepted" if expect == "accepted" else "refused",
                attempts=p.integer("attempts", 3),
            )
        )
    t = r.sub("timeouts", {})
    timeouts = PostTimeouts(
        request=t.number("request", 5.0, 0.001),
        plaintext=t.number("plaintext", 2.0, 0.001),
        settle=t.number("settle", 15.0),
        total=t.number("total", 30.0, 0.001),
    )
    return Postcheck(gateway=gateway, plaintext=tuple(probes), timeouts=timeouts)


def _parse_tightened(r: _Reader, key: str) -> list[Tightened]:
    services: list[Tightened] = []
    for i, item in enumerate(r.items(key) if key in r.data or key == "services" else []):
        s = _Reader(item, f"{r.path}.{key}[{i}]")
        name = s.text("service")
        mesh = s.flag("count_mesh_callers", False) if "count_mesh_callers" in s.data else None
        probe = _check_url(s.text("probe_url"), f"{s.path}.probe_url") if "probe_url" in s.data else None
        services.append(
            Tightened(
                service=name,
                namespace=s.text("namespace"),
                selector=s.text("selector", f"app={name}"),
                count_mesh_callers=mesh,
                probe_url=probe,
            )
        )
    return services


def _parse_precheck(r: _Reader) -> Precheck:
    services = _parse_tightened(r, "services")
    outbound = _parse_tightened(r, "outbound")
    mesh = None
    if "mesh" in r.data:
        m = r.sub("mesh")
        mesh = (m.text("namespace"), m.text("name"))
    sig = r.sub("signal", {})
    signal = Signal(
        container=sig.text("container", Signal.container),
        inbound_cluster=sig.text("inbound_cluster", Signal.inbound_cluster),
        ignore_namespaces=sig.texts("ignore_namespaces", list(Signal.ignore_namespaces)),
        count_mesh_callers=sig.flag("count_mesh_callers", Signal.count_mesh_callers),
        mesh_annotation=sig.text("mesh_annotation", Signal.mesh_annotation),
        outbound_cluster=sig.text("outbound_cluster", Signal.outbound_cluster),
    )
    k = r.sub("kubernetes", {})
    kube = KubeConfig(
        url=_check_url(k.text("url", KubeConfig.url), f"{k.path}.url"),
        token_file=k.opt_text("token_file") if "token_file" in k.data else KubeConfig.token_file,
        ca_file=k.opt_text("ca_file") if "ca_file" in k.data else KubeConfig.ca_file,
    )
    t = r.sub("timeouts", {})
    return Precheck(
        step=r.text("step"),
        services=tuple(services),
        window_seconds=r.integer("window_seconds"),
        signal=signal,
        kubernetes=kube,
        timeouts=PreTimeouts(request=t.number("request", 5.0, 0.001), total=t.number("total", 10.0, 0.001)),
        outbound=tuple(outbound),
        mesh=mesh,
    )


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


# --- postcheck: through the gateway ---------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes


def http_get(url: str, timeout: float) -> Answer:
    """One GET on a fresh connection; raises OSError subclasses (timeouts: TimeoutError)."""
    parts = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request("GET", path + (f"?{parts.query}" if parts.query else ""), headers=_headers())
        resp = conn.getresponse()
        return Answer(resp.status, resp.read(MAX_BODY))
    finally:
        conn.close()


def _headers() -> dict[str, str]:
    return {"User-Agent": USER_AGENT, "Connection": "close", "Accept": "application/json"}


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
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text


@dataclass(frozen=True)
class Hop:
    service: str
    name: str
    uri: str
    code: object
    error: object


def service_of(uri: str) -> str:
    """The service an upstream URI addresses: the first label of its host (api.service.consul -> api)."""
    host = urllib.parse.urlsplit(uri if "//" in uri else f"//{uri}").hostname or uri
    return host.split(".")[0]


def hops(answer: Mapping[str, Any], service: str, uri: str = "") -> Iterator[Hop]:
    """Every level of a fake-service answer: the service itself, then each upstream_calls entry."""
    yield Hop(service, str(answer.get("name", "")), uri, answer.get("code"), answer.get("error"))
    calls = answer.get("upstream_calls") or {}
    items = calls.items() if isinstance(calls, dict) else ((c.get("uri", ""), c) for c in calls if isinstance(c, dict))
    for key, call in items:
        if isinstance(call, dict):
            call_uri = str(call.get("uri") or key)
            yield from hops(call, service_of(call_uri), call_uri)


def gateway_round(g: Gateway, timeouts: PostTimeouts, deadline: Deadline) -> tuple[dict[str, Counter[str]], float]:
    """Sends g.requests requests; returns the names seen per service and the slowest request's time."""
    check = "postcheck gateway"
    seen: dict[str, Counter[str]] = {svc: Counter() for svc in g.names}
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
                _failed_hop(doc, g.exposed) if isinstance(doc, dict) else _short(answer.body.decode(errors="replace"))
            )
            raise CheckFailed(f"{check}: expected HTTP 200 from {g.url}, saw HTTP {answer.status} {where}: {detail}")
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            body = _short(answer.body.decode(errors="replace"))
            raise CheckFailed(f"{check}: expected fake-service JSON with a name from {g.url}, saw {body} {where}")
        bad = _failed_hop(doc, g.exposed)
        if bad:
            raise CheckFailed(f"{check}: expected code 200 at every hop, saw {bad} {where}")
        for hop in hops(doc, g.exposed):
            seen.setdefault(hop.service, Counter())[hop.name] += 1
    return seen, slowest


def _failed_hop(doc: Mapping[str, Any], exposed: str) -> str:
    """The first hop of an answer that failed, described; '' when every hop answered 200."""
    failed = [h for h in hops(doc, exposed) if h.error or (h.code is not None and h.code != 200)]
    if not failed:
        return ""
    # The deepest failure is the cause; the levels above only report it.
    h = failed[-1]
    where = f" at {h.uri}" if h.uri else ""
    error = f", error {_short(h.error)}" if h.error else ""
    name = f" ({json.dumps(h.name)})" if h.name else ""
    return f"{h.service}{name}{where} answered code {h.code}{error}"


def check_names(g: Gateway, seen: Mapping[str, Counter[str]]) -> None:
    """Per service: only the expected names, and with k versions each in >= 1/k - tolerance of answers."""
    unknown = sorted(s for s in seen if s not in g.names and seen[s])
    if unknown:
        svc = unknown[0]
        raise CheckFailed(
            f"postcheck upstreams: expected calls only to {fmt_set(g.names)}, "
            f"saw calls to {svc} answering {fmt_counts(seen[svc])} in {g.requests} requests"
        )
    for svc in sorted(g.names):
        expected = set(g.names[svc])
        counts = seen.get(svc, Counter())
        total = sum(counts.values())
        label = f"postcheck upstreams {svc}"
        if set(counts) - expected or not total:
            raise CheckFailed(
                f"{label}: expected {fmt_set(expected)}, saw {fmt_counts(counts)} in {g.requests} requests"
            )
        k = len(expected)
        share = max(0.0, 1.0 / k - g.tolerance)
        least = max(1, math.ceil(share * total - 1e-9))
        short = [n for n in expected if counts[n] < least]
        if short:
            each = f"each in at least {share:.0%} of {svc}'s {total} answers" if share > 0 else "each at least once"
            shown = {n: counts[n] for n in sorted(expected | set(counts))}
            raise CheckFailed(
                f"{label}: expected {fmt_set(expected)} {each}, saw {fmt_counts(shown)} in {g.requests} requests"
            )


# --- postcheck: plain text from outside the mesh ----------------------------------------------------


@dataclass(frozen=True)
class Probe:
    verdict: Verdict
    detail: str  # what was seen: "HTTP 200", "connection reset", ...


def probe_plaintext(url: str, timeout: float) -> Probe:
    """A plain-text HTTP request on a fresh TCP connection, judged as a strict sidecar is expected to act.

    Refused: the connection is refused, or closed or reset before any HTTP response (a strict
    sidecar accepts the TCP connection, then its TLS handshake fails on plain text and Envoy
    closes). Accepted: an HTTP status line, whatever the status. Raises TimeoutError when neither
    comes in time, and OSError when the address cannot be reached at all (no such name, no route).
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        sock = socket.create_connection((parts.hostname or "", port), timeout=timeout)
    except ConnectionRefusedError:
        return Probe("refused", "connection refused")
    data = b""
    try:
        with sock:
            request = (
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"User-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n"
            )
            try:
                sock.sendall(request.encode())
            except (BrokenPipeError, ConnectionResetError):
                return Probe("refused", "connection reset before the request was sent")
            while b"\r\n" not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except ConnectionResetError:
        if data.startswith(b"HTTP/"):
            return Probe("accepted", _status_line(data))
        return Probe("refused", "connection reset" + (f" after {len(data)} non-HTTP bytes" if data else ""))
    if data.startswith(b"HTTP/"):
        return Probe("accepted", _status_line(data))
    if not data:
        return Probe("refused", "connection closed without a response")
    return Probe("refused", f"connection closed after {len(data)} non-HTTP bytes")


def _status_line(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = line.split(" ", 2)
    return f"HTTP {parts[1]}" if len(parts) > 1 else line


def plaintext_round(probes: Sequence[Plaintext], timeouts: PostTimeouts, deadline: Deadline) -> None:
    for p in probes:
        check = f"postcheck plaintext {p.service}"
        for attempt in range(1, p.attempts + 1):
            where = f"(attempt {attempt} of {p.attempts}, expected {p.expect})"
            timeout = deadline.cap(timeouts.plaintext, f"probing {p.url} {where}")
            try:
                probe = probe_plaintext(p.url, timeout)
            except TimeoutError:
                raise deadline.timed_out(check, timeout, f"waiting for {p.url} to answer or close {where}") from None
            except OSError as exc:
                raise CheckFailed(
                    f"{check}: expected {p.url} {p.expect}, saw {_describe_oserror(exc)} {where}"
                ) from None
            if probe.verdict != p.expect:
                raise CheckFailed(f"{check}: expected {p.url} {p.expect}, saw {probe.verdict}: {probe.detail} {where}")


def run_postcheck(
    post: Postcheck, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Rounds of (gateway, plain text) until one passes or `settle` is over; the summary line."""
    t = post.timeouts
    deadline = Deadline("postcheck", t.total, clock)
    rounds = 0
    while True:
        rounds += 1
        try:
            started = clock()
            seen, slowest = gateway_round(post.gateway, t, deadline)
            check_names(post.gateway, seen)
            gateway_time = clock() - started
            started = clock()
            plaintext_round(post.plaintext, t, deadline)
            plaintext_time = clock() - started
        except CheckFailed as exc:
            waited = deadline.elapsed()
            if waited >= t.settle or deadline.left() <= 0:
                suffix = f" [{rounds} rounds over {_secs(waited)}]" if rounds > 1 else ""
                raise CheckFailed(f"{exc}{suffix}") from None
            sleep(min(1.0, max(0.0, t.settle - waited), max(0.0, deadline.left())))
            continue
        g = post.gateway
        names = "; ".join(f"{svc} {fmt_counts(seen[svc])}" for svc in sorted(g.names))
        verdicts = ", ".join(f"{p.service} {p.expect}" for p in post.plaintext) or "none"
        return (
            f"postcheck ok: {g.requests} requests through {g.url} in {_secs(gateway_time)} "
            f"(slowest {_secs(slowest)}): {names}; plain text: {verdicts} in {_secs(plaintext_time)}; "
            f"{rounds} round{'s' if rounds > 1 else ''}, {_secs(deadline.elapsed())} in all"
        )


# --- precheck: live plain-text callers ---------------------------------------------------------------


class KubeApi(Protocol):
    """What the precheck reads from the Kubernetes API; tests give recorded answers."""

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def pod_log(self, namespace: str, pod: str, container: str, since_seconds: int) -> str: ...

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]] | None:
        """Pods (any namespace) whose status.podIP is `ip`; None when not allowed to list them."""
        ...

    def get_mesh(self, namespace: str, name: str) -> dict[str, Any]:
        """Consul's Mesh config entry object (consul.hashicorp.com/v1alpha1)."""
        ...


class KubeError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpKube:
    """The Kubernetes API over urllib, authenticated with the pod's service account token."""

    def __init__(self, cfg: KubeConfig, timeout: float) -> None:
        self.base = cfg.url.rstrip("/")
        self.timeout = timeout
        self.token = ""
        if cfg.token_file:
            try:
                with open(cfg.token_file, encoding="utf-8") as f:
                    self.token = f.read().strip()
            except OSError as exc:
                raise Invalid(f"precheck kubernetes: cannot read the token {cfg.token_file}: {exc.strerror}") from None
        context: ssl.SSLContext | None = None
        if self.base.startswith("https://"):
            try:
                context = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else None
            except (OSError, ssl.SSLError) as exc:
                raise Invalid(f"precheck kubernetes: cannot load the CA {cfg.ca_file}: {exc}") from None
        # Straight to the API server: no HTTP(S)_PROXY from the environment.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def _get(self, path: str, query: Mapping[str, str | int]) -> bytes:
        url = f"{self.base}{path}?{urllib.parse.urlencode(query)}" if query else f"{self.base}{path}"
        headers = {"Accept": "application/json, */*", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise KubeError(exc.code, f"GET {path}: HTTP {exc.code} {_status_message(exc.read())}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"GET {path}") from None
            raise KubeError(
                None, f"GET {path}: {_describe_oserror(exc.reason) if isinstance(exc.reason, OSError) else exc.reason}"
            ) from None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods"
        return _items(self._get(path, {"labelSelector": selector}))

    def pod_log(self, namespace: str, pod: str, container: str, since_seconds: int) -> str:
        path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(pod)}/log"
        return self._get(path, {"container": container, "sinceSeconds": since_seconds}).decode(errors="replace")

    def get_mesh(self, namespace: str, name: str) -> dict[str, Any]:
        path = f"/apis/consul.hashicorp.com/v1alpha1/namespaces/{urllib.parse.quote(namespace)}/meshes/{name}"
        return json.loads(self._get(path, {}))

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]] | None:
        try:
            return _items(self._get("/api/v1/pods", {"fieldSelector": f"status.podIP={ip}"}))
        except KubeError as exc:
            if exc.status in (401, 403):
                return None
            raise


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return str(status.get("message") or status.get("reason") or "")
    except (ValueError, AttributeError):
        return _short(body.decode(errors="replace"))


def _items(body: bytes) -> list[dict[str, Any]]:
    doc = json.loads(body)
    items = doc.get("items") if isinstance(doc, dict) else None
    return [i for i in items or [] if isinstance(i, dict)]


# Consul's default access-log format, used when ProxyDefaults enables access logs without a format of
# its own (hashicorp/consul agent/xds/accesslogs/accesslogs.go, defaultJSONFormat, at
# 05ecf385e25af968d5aee2e1b4621346572c1849), written by Envoy to stdout as one JSON object a line:
#   start_time %START_TIME%, route_name %ROUTE_NAME%, method %REQ(:METHOD)%,
#   path %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%, protocol %PROTOCOL%, response_code %RESPONSE_CODE%,
#   response_flags %RESPONSE_FLAGS%, response_code_details %RESPONSE_CODE_DETAILS%,
#   connection_termination_details %CONNECTION_TERMINATION_DETAILS%, bytes_received %BYTES_RECEIVED%,
#   bytes_sent %BYTES_SENT%, duration %DURATION%, upstream_service_time %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%,
#   x_forwarded_for %REQ(X-FORWARDED-FOR)%, user_agent %REQ(USER-AGENT)%, request_id %REQ(X-REQUEST-ID)%,
#   authority %REQ(:AUTHORITY)%, upstream_host %UPSTREAM_HOST%, upstream_cluster %UPSTREAM_CLUSTER%,
#   upstream_local_address %UPSTREAM_LOCAL_ADDRESS%, downstream_local_address %DOWNSTREAM_LOCAL_ADDRESS%,
#   downstream_remote_address %DOWNSTREAM_REMOTE_ADDRESS%, requested_server_name %REQUESTED_SERVER_NAME%,
#   upstream_transport_failure_reason %UPSTREAM_TRANSPORT_FAILURE_REASON%
# The precheck reads upstream_cluster, requested_server_name, downstream_remote_address and start_time.
# Key order and value types are not relied on (Envoy gets the format as a protobuf map, and writes
# numbers and null for single-operator values); null, "" and "-" all mean "no value".


def access_log_entries(text: str) -> Iterator[dict[str, Any]]:
    """The Envoy access-log records in a container log: one JSON object a line, among other lines
    (consul-dataplane's own log and Envoy's application log, on the same stream)."""
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(entry, dict) and "downstream_remote_address" in entry:
            yield entry


def _present(value: object) -> bool:
    return value not in (None, "", "-")


def is_plaintext_inbound(entry: Mapping[str, Any], inbound_cluster: str) -> bool:
    """An inbound connection or request that reached the app without TLS.

    Inbound traffic goes to the cluster `local_app` (outbound calls go to upstream clusters, and
    the probes Consul exposes to kubelet to `exposed_cluster_<port>`). Every mesh caller's Envoy
    sets SNI on its mTLS connection, so an inbound record with no requested_server_name came in
    plain text: through the permissive filter chain, the only one without TLS.
    """
    return (
        entry.get("upstream_cluster") == inbound_cluster
        and not _present(entry.get("requested_server_name"))
        and _present(entry.get("downstream_remote_address"))
    )


def remote_ip(address: str) -> str:
    """'10.0.2.14:48812' -> '10.0.2.14'; '[fd00::5]:48812' -> 'fd00::5'."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    return host.strip("[]")


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _containers(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [c.get("name", "") for key in ("containers", "initContainers") for c in spec.get(key) or []]


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def _pod_ref(pod: Mapping[str, Any]) -> str:
    return f"{_meta(pod).get('namespace', '?')}/{_meta(pod).get('name', '?')}"


@dataclass
class Caller:
    ip: str
    connections: int = 0
    last: str = ""
    services: set[str] = field(default_factory=set)
    who: str = ""  # namespace/pod, or a note on the address


@dataclass
class PrecheckStats:
    pods: int = 0
    entries: int = 0
    plaintext: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # services that refuse plain text already


def find_callers(pre: Precheck, kube: KubeApi, deadline: Deadline) -> tuple[list[Caller], PrecheckStats]:
    """The plain-text callers of the tightened services that the step would cut off."""
    sig = pre.signal
    timeout = pre.timeouts.request
    stats = PrecheckStats()
    by_ip: dict[str, Caller] = {}
    for svc in pre.services:
        if svc.probe_url is not None:
            waited = deadline.cap(timeout, f"probing {svc.probe_url}")
            try:
                refused = probe_plaintext(svc.probe_url, waited).verdict == "refused"
            except TimeoutError:
                raise deadline.timed_out("precheck callers", waited, f"probing {svc.probe_url}") from None
            except OSError:
                refused = False  # unreachable: read its log rather than assume it was tightened before
            if refused:
                stats.skipped.append(svc.service)
                continue
        pods = _kube(
            kube,
            timeout,
            deadline,
            f"listing the pods of {svc.service}",
            lambda s=svc: kube.list_pods(s.namespace, s.selector),
        )
        sidecars = [
            p
            for p in pods
            if sig.container in _containers(p) and (p.get("status") or {}).get("phase") in ("Running", None)
        ]
        if not sidecars:
            raise CheckFailed(
                f"precheck callers: expected pods of {svc.service} with a {sig.container} container to read "
                f"({svc.selector} in {svc.namespace}), saw {len(pods)} pods and none with one"
            )
        for pod in sidecars:
            name = str(_meta(pod).get("name", ""))
            text = _kube(
                kube,
                timeout,
                deadline,
                f"reading the {sig.container} log of {svc.namespace}/{name}",
                lambda n=name, s=svc: kube.pod_log(s.namespace, n, sig.container, pre.window_seconds),
            )
            stats.pods += 1
            for entry in access_log_entries(text):
                stats.entries += 1
                if not is_plaintext_inbound(entry, sig.inbound_cluster):
                    continue
                stats.plaintext += 1
                ip = remote_ip(str(entry["downstream_remote_address"]))
                caller = by_ip.setdefault(ip, Caller(ip))
                caller.connections += 1
                caller.services.add(svc.service)
                caller.last = max(caller.last, str(entry.get("start_time") or ""))
    live: list[Caller] = []
    for ip, caller in sorted(by_ip.items()):
        if _is_loopback(ip):
            stats.ignored["the pod itself"] += caller.connections
            continue
        pods = _kube(
            kube, timeout, deadline, f"looking up the pod with address {ip}", lambda i=ip: kube.pods_with_ip(i)
        )
        if pods is None:
            caller.who = f"{ip} (not allowed to list pods to name it)"
            live.append(caller)
            continue
        # Prefer pods that hold the address now; a finished pod may have had it before.
        running = [p for p in pods if (p.get("status") or {}).get("phase") in ("Running", "Pending")] or pods
        if any(_meta(p).get("namespace") in sig.ignore_namespaces for p in running):
            stats.ignored["the checks' own probes"] += caller.connections
            continue
        in_mesh = [p for p in running if (_meta(p).get("annotations") or {}).get(sig.mesh_annotation) == "injected"]
        counted = any(
            sig.count_mesh_callers if t.count_mesh_callers is None else t.count_mesh_callers
            for t in pre.services
            if t.service in caller.services
        )
        if in_mesh and len(in_mesh) == len(running) and not counted:
            stats.ignored["callers in the mesh"] += caller.connections
            continue
        if not running:
            caller.who = f"{ip} (no pod has this address)"
        else:
            refs = ", ".join(_pod_ref(p) for p in running[:3]) + (", ..." if len(running) > 3 else "")
            caller.who = f"{refs} ({ip})"
        live.append(caller)
    live.sort(key=lambda c: (-c.connections, c.ip))  # the busiest caller first
    return live, stats


def _kube(api: KubeApi, timeout: float, deadline: Deadline, doing: str, call: Callable[[], Any]) -> Any:
    """One API call within the precheck's budget; a timeout fails the check, an API error stops it."""
    waited = deadline.cap(timeout, doing)
    if isinstance(api, HttpKube):
        api.timeout = waited
    try:
        return call()
    except TimeoutError:
        raise deadline.timed_out("precheck callers", waited, doing) from None
    except KubeError as exc:
        raise Invalid(f"precheck callers: could not check, {doing} failed: {exc}") from None
    except (OSError, ValueError) as exc:
        raise Invalid(f"precheck callers: could not check, {doing} failed: {exc}") from None


def _sidecar_logs(
    pre: Precheck, svc: Tightened, kube: KubeApi, deadline: Deadline, check: str
) -> Iterator[tuple[str, str]]:
    """(pod name, sidecar log of the window) for each running pod of `svc` that has the sidecar."""
    sig = pre.signal
    timeout = pre.timeouts.request
    pods = _kube(
        kube,
        timeout,
        deadline,
        f"listing the pods of {svc.service}",
        lambda: kube.list_pods(svc.namespace, svc.selector),
    )
    for pod in pods:
        if sig.container not in _containers(pod) or (pod.get("status") or {}).get("phase") not in ("Running", None):
            continue
        name = str(_meta(pod).get("name", ""))
        text = _kube(
            kube,
            timeout,
            deadline,
            f"reading the {sig.container} log of {svc.namespace}/{name}",
            lambda n=name: kube.pod_log(svc.namespace, n, sig.container, pre.window_seconds),
        )
        yield name, text


def mesh_closed_already(pre: Precheck, kube: KubeApi, deadline: Deadline) -> bool:
    if pre.mesh is None:
        return False
    namespace, name = pre.mesh
    mesh = _kube(
        kube,
        pre.timeouts.request,
        deadline,
        f"reading the Mesh {namespace}/{name}",
        lambda: kube.get_mesh(namespace, name),
    )
    return bool(((mesh.get("spec") or {}).get("transparentProxy") or {}).get("meshDestinationsOnly"))


def find_outside_destinations(pre: Precheck, kube: KubeApi, deadline: Deadline) -> tuple[list[str], int]:
    """Calls from the mesh to destinations outside it, per pod and destination, busiest first."""
    seen: Counter[str] = Counter()
    pods = 0
    if pre.outbound and mesh_closed_already(pre, kube, deadline):
        return [], 0
    for svc in pre.outbound:
        for name, text in _sidecar_logs(pre, svc, kube, deadline, "precheck destinations"):
            pods += 1
            for entry in access_log_entries(text):
                host = entry.get("upstream_host")
                if entry.get("upstream_cluster") == pre.signal.outbound_cluster and _present(host):
                    seen[f"{svc.namespace}/{name} -> {host}"] += 1
    return [f"{what}: {n} connection{'s' if n != 1 else ''}" for what, n in seen.most_common()], pods


def run_precheck(pre: Precheck, kube: KubeApi | None = None, clock: Callable[[], float] = time.monotonic) -> str:
    deadline = Deadline("precheck callers", pre.timeouts.total, clock)
    if not pre.services and not pre.outbound:
        return f"precheck ok: {pre.step} tightens no service's plain-text access; nothing to read"
    api = kube if kube is not None else HttpKube(pre.kubernetes, pre.timeouts.request)
    outside, outbound_pods = find_outside_destinations(pre, api, deadline)
    if outside:
        raise CheckFailed(
            f"precheck destinations: expected no call from the mesh to a destination outside it before {pre.step} "
            f"closes the Mesh, saw {'; '.join(outside)} (in the last {pre.window_seconds} s)"
        )
    if not pre.services:
        return (
            f"precheck ok: no call from the mesh to a destination outside it in the last {pre.window_seconds} s "
            f"({outbound_pods} sidecar logs); {_secs(deadline.elapsed())}"
        )
    callers, stats = find_callers(pre, api, deadline)
    services = ", ".join(s.service for s in pre.services if s.service not in stats.skipped)
    if stats.skipped and len(stats.skipped) == len(pre.services) and not callers:
        return (
            f"precheck ok: {', '.join(stats.skipped)} refuse plain text already; {pre.step} tightens nothing "
            f"there; {_secs(deadline.elapsed())}"
        )
    if callers:
        listed = "; ".join(
            f"{c.who} -> {', '.join(sorted(c.services))}: {c.connections} plain-text "
            f"connection{'s' if c.connections != 1 else ''}, last {c.last or 'time unknown'}"
            for c in callers
        )
        raise CheckFailed(
            f"precheck callers: expected no plain-text caller outside the mesh of {services} before {pre.step}, "
            f"saw {listed} (in the last {pre.window_seconds} s)"
        )
    ignored = ", ".join(f"{n} from {what}" for what, n in sorted(stats.ignored.items()))
    return (
        f"precheck ok: no plain-text caller outside the mesh of {services} in the last {pre.window_seconds} s "
        f"({stats.pods} sidecar log{'s' if stats.pods != 1 else ''}, {stats.entries} access-log records, "
        f"{stats.plaintext} plain-text"
        f"{'; ignored ' + ignored if ignored else ''}); {_secs(deadline.elapsed())}"
    )


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
    kube: KubeApi | None = None,
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
            line = run_precheck(exp.precheck, kube, clock)
    except CheckFailed as exc:
        _emit(str(exc), stream, env)
        return EXIT_FAILED
    except Invalid as exc:
        _emit(str(exc), stream, env)
        return EXIT_INVALID
    _emit(f"[{exp.phase}] {line}", stream, env)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""Loopback stand-ins for what the checks read on a cluster: one event loop serving a fake Kubernetes
API, the pods behind each Service (their apps and Consul's sidecars, on addresses 127.0.0.N) and the
API gateway. The tests (tests/meshcheck/) and devtools/bench_checks.py use them; make discover's
recorded cluster (devtools/cluster.py) is served on the same loop and renders its sidecars' records
with the same Envoy model.

Nothing here is written to match the check script. What each stand-in says comes from the system
that says it on a cluster, at the versions the program pins:

- the Kubernetes API (`FakeCluster`): Pod, EndpointSlice (discovery.k8s.io/v1: one address an
  endpoint, `ready` false for a pod that is not ready or terminating), the pod log (each line after
  the kubelet's RFC 3339 time with `timestamps=true`, `sinceSeconds` honoured, the current file
  only), meta/v1 Status for a refusal, and RBAC: a request is allowed only when the rendered Roles and
  bindings grant it to the service account whose token it carries;
- consul-k8s v2.0.3's injection (connect-inject/webhook/mesh_webhook.go): the `consul-dataplane`
  container with the `prometheus` port (consul_dataplane_sidecar.go getMetricsPorts, chart default
  20200), `consul.hashicorp.com/connect-inject-status: injected`, the readiness probe moved to an
  expose-path port from 20400 (overwriteProbes);
- the sidecar (`Envoy` below): the filter chains hashicorp/consul agent/xds/listeners.go builds for a
  tproxy proxy (the permissive chain, makePermissiveFilterChain, passes plain text to the app; the
  mTLS chain, makeInboundListener, closes a plain-text connection without a byte once its TLS
  handshake fails), their access-log records rendered through the format ProxyDefaults configures,
  with Envoy 1.37's formatter semantics, and their statistics in Prometheus text as consul-dataplane
  serves them (pkg/consuldp/metrics.go mergedMetricsHandler; Envoy's tag extraction,
  source/common/config/well_known_names.cc);
- fake-service v0.26.0 (response/response.go): `name`, `uri`, `code`, `upstream_calls`.

`from_rendered` builds a cluster from the program's rendered objects (program/offline.py), so a test
or the bench drives a step through the very documents, Deployments and config entries it renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from migration.phases import PHASE_NAMES
from program.offline import Resource, Run, live_key

# --- Envoy, as Consul configures a tproxy sidecar ----------------------------------------------------------

# The trust domain of Consul's golden files (agent/xds/testdata: the leaf of `web` carries
# spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web).
TRUST_DOMAIN = "11111111-2222-3333-4444-555555555555.consul"
# The caller's sidecar is the TLS client of an mTLS connection; Envoy's client default maximum is TLS
# 1.2 (envoy.extensions.transport_sockets.tls.v3.TlsParameters.tls_maximum_protocol_version) and Consul
# sets none unless the Mesh configures tls.outgoing (agent/xds makeTLSParametersFromProxyTLSConfig).
TLS_VERSION = "TLSv1.2"
PUBLIC_LISTENER_PORT = 20000  # consul-k8s constants.ProxyDefaultInboundPort
READINESS_PORT = 20400  # consul-k8s webhook exposedPathsReadinessPortsRangeStart
METRICS_PORT = 20200  # the chart's connectInject.metrics.defaultPrometheusScrapePort


def spiffe(service: str, namespace: str = "default", datacenter: str = "dc1") -> str:
    """A Consul leaf certificate's URI SAN (agent/connect/uri_service.go SpiffeIDService.URI)."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/dc/{datacenter}/svc/{service}"


# permissive: the public listener's TCP proxy to local_app; mtls: its HTTP connection manager; expose: a
# probe's listener (an HTTP connection manager); outbound: the outbound listener's catch-all TCP proxy to
# original-destination (a destination outside the mesh); upstream: its HTTP connection manager to a mesh
# upstream's cluster (agent/xds/listeners.go makeUpstreamFilterChain, for an http service).
Chain = Literal["permissive", "mtls", "expose", "outbound", "upstream"]


@dataclass
class Connection:
    """One connection (TCP proxy) or request (HTTP connection manager) a sidecar logs."""

    chain: Chain
    remote: str  # ip:port of the caller
    local: str  # ip:port Envoy saw it sent to (original_dst restores it on the permissive chain)
    start: float
    upstream: str = "127.0.0.1:9091"  # the app (local_app), or the destination outside the mesh
    peer: str | None = None  # mtls: the caller's SPIFFE ID
    method: str = "GET"
    path: str = "/"
    status: int = 200
    user_agent: str = "Go-http-client/1.1"
    authority: str = ""
    bytes_received: int = 0
    bytes_sent: int = 264
    duration_ms: int = 3
    connection_id: int = 0
    cluster: str = ""  # upstream: the cluster, <service>.default.<dc>.internal.<trust domain>
    tcp: bool = False  # a tcp service's: its mTLS chain is a TCP proxy too (consul makeInboundListener)

    @property
    def http(self) -> bool:
        return self.chain in ("mtls", "expose", "upstream") and not self.tcp


def operator_values(c: Connection) -> dict[str, Any]:
    """What Envoy 1.37 writes for each command operator in a JSON format (core/v3 SubstitutionFormatString
    json_format: typed values; an unset operator is null, since Consul sets no omit_empty_values;
    docs/root/configuration/observability/access_log/usage.rst for each operator)."""
    http = c.http
    cluster = {"outbound": "original-destination", "upstream": c.cluster}.get(c.chain, "local_app")
    return {
        "%START_TIME%": datetime.fromtimestamp(c.start, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(c.start * 1000) % 1000:03d}Z",  # a string with milliseconds, always
        "%ROUTE_NAME%": None,  # Consul's routes have no name
        "%REQ(:METHOD)%": c.method if http else None,
        "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%": c.path if http else None,
        "%PROTOCOL%": "HTTP/1.1" if http else "-",  # "the string '-' if the protocol is not available"
        "%RESPONSE_CODE%": c.status if http else 0,  # numeric; a TCP connection has none
        "%RESPONSE_FLAGS%": "-",
        "%RESPONSE_CODE_DETAILS%": "via_upstream" if http else None,
        "%CONNECTION_TERMINATION_DETAILS%": None,
        "%BYTES_RECEIVED%": c.bytes_received,
        "%BYTES_SENT%": c.bytes_sent,
        "%DURATION%": c.duration_ms,
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%": str(max(0, c.duration_ms - 1)) if http else None,
        "%REQ(X-FORWARDED-FOR)%": None,
        "%REQ(USER-AGENT)%": c.user_agent if http else None,
        "%REQ(X-REQUEST-ID)%": f"{c.connection_id:08x}-7d1e-4c2b-9a55-{c.connection_id:012x}" if http else None,
        "%REQ(:AUTHORITY)%": (c.authority or c.local) if http else None,
        "%UPSTREAM_HOST%": c.upstream,
        "%UPSTREAM_CLUSTER%": cluster,
        "%UPSTREAM_LOCAL_ADDRESS%": f"127.0.0.1:{40000 + c.connection_id % 20000}",
        "%DOWNSTREAM_LOCAL_ADDRESS%": c.local,
        "%DOWNSTREAM_REMOTE_ADDRESS%": c.remote,
        # Set by the tls_inspector listener filter only, which Consul's public listener lacks.
        "%REQUESTED_SERVER_NAME%": None,
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%": None,
        "%DOWNSTREAM_TLS_VERSION%": TLS_VERSION if c.chain == "mtls" else None,
        "%DOWNSTREAM_PEER_URI_SAN%": c.peer if c.chain == "mtls" else None,
        "%CONNECTION_ID%": c.connection_id,
    }


def render_record(fmt: Mapping[str, str], c: Connection, rng: random.Random | None = None) -> str:
    """The record's line as Envoy's stdout access logger writes it. Consul passes the format as a
    protobuf Struct, so the key order is not the format's: it is shuffled here."""
    values = operator_values(c)
    unknown = sorted(set(fmt.values()) - set(values))
    if unknown:
        raise KeyError(f"{unknown}: the stub does not model these Envoy operators; add what Envoy writes for them")
    keys = list(fmt)
    (rng or random.Random(c.connection_id)).shuffle(keys)
    return json.dumps({k: values[fmt[k]] for k in keys}, separators=(",", ":"))


def stamp(when: float) -> str:
    """The kubelet's time of a log line with `timestamps=true` (RFC 3339, nanoseconds)."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(when * 1e9) % 10**9:09d}Z"


def dataplane_lines(started: float) -> list[tuple[float, str]]:
    """What else a consul-dataplane container writes on the same stream: its own hclog lines and Envoy's
    application log in consul-dataplane's plain format (release/2.0.x pkg/envoy/proxy.go logFormatPlain)."""
    t = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return [
        (started, f"{t}Z [INFO]  consul-dataplane: started consul-dataplane process"),
        (started, f"{t}Z [INFO]  consul-dataplane.server-connection-manager: trying to connect to a Consul server"),
        (started + 0.1, f"{t}Z+0000 [info] envoy.main(1) starting main dispatch loop"),
        (started + 0.2, f"{t}Z+0000 [info] envoy.upstream(1) cds: add 4 cluster(s), remove 0 cluster(s)"),
    ]


# --- the cluster's pods ------------------------------------------------------------------------------------


@dataclass
class UpstreamTraffic:
    """What a caller's sidecar sends one mesh upstream while a check runs: every reading of its statistics
    finds this much more (Envoy's counters only grow; a test's readings stand for time passing)."""

    protocol: str = "http"  # the upstream's: an HTTP connection manager counts requests, a TCP proxy none
    requests: int = 20  # new requests per reading (http, http2, grpc)
    errors: int = 0  # of those, answered 5xx
    connections: int = 2  # new connections per reading
    connect_failures: int = 0
    pod_ips: int = 0  # new connections to its pod IPs (passthrough~<upstream>: the .service.consul way)
    readings: int = 0

    def samples(self, upstream: str, tags: str) -> list[str]:
        """This upstream's cluster statistics in Prometheus text, after Envoy's tag extraction: Consul's
        SNI cluster name `<service>.default.dc1.internal.<trust domain>.consul` is cut out of the stat
        name into consul-dataplane's tags (internal/bootstrap/bootstrap_config.go resourceTagSpecifiers:
        consul_destination_service, _namespace, _datacenter, _routing_type, _trust_domain, _target,
        _full_target) and Envoy's own (source/common/config/well_known_names.cc: envoy_cluster_name, the
        first dot-segment after `cluster.`; envoy_response_code_class, the digit of `upstream_rq_<d>xx`)."""
        self.readings += 1
        n = self.readings
        dest = (
            f'consul_destination_service="{upstream}",consul_destination_namespace="default",'
            f'consul_destination_datacenter="dc1",consul_destination_routing_type="internal",'
            f'consul_destination_trust_domain="{TRUST_DOMAIN}",consul_destination_target="{upstream}.default.dc1",'
            f'consul_destination_full_target="{upstream}.default.dc1.internal.{TRUST_DOMAIN}"'
        )
        mesh, direct = (
            f'{tags},envoy_cluster_name="{upstream}",{dest}',
            f'{tags},envoy_cluster_name="passthrough~{upstream}",{dest}',
        )
        out = [
            f"envoy_cluster_upstream_cx_total{{{mesh}}} {n * self.connections}",
            f"envoy_cluster_upstream_cx_connect_fail{{{mesh}}} {n * self.connect_failures}",
            f"envoy_cluster_upstream_cx_total{{{direct}}} {n * self.pod_ips}",
            f"envoy_cluster_upstream_cx_connect_fail{{{direct}}} 0",
        ]
        if self.protocol != "tcp":
            ok = self.requests - self.errors
            out += [
                f"envoy_cluster_upstream_rq_total{{{mesh}}} {n * self.requests}",
                f'envoy_cluster_upstream_rq_xx{{{mesh},envoy_response_code_class="2"}} {n * ok}',
                f'envoy_cluster_upstream_rq_xx{{{mesh},envoy_response_code_class="5"}} {n * self.errors}',
            ]
        return out


@dataclass
class FakePod:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    port: int  # the app's port: where callers send to
    answers_as: str = ""  # fake-service NAME
    injected: bool = False  # consul-k8s added its sidecar
    mtls: Literal["permissive", "strict"] = "strict"  # the sidecar's inbound mode (its ServiceDefaults)
    upstreams: tuple[str, ...] = ()  # fake-service UPSTREAM_URIS
    ready: bool = True
    terminating: bool = False
    phase: str = "Running"
    metrics: bool = True  # the sidecar's Prometheus port
    host_network: bool = False
    node_ip: str = "127.0.1.1"
    started: float = 0.0
    log: list[tuple[float, str]] = field(default_factory=list)  # (kubelet time, line)
    open_plaintext: int = 0  # long-lived plain-text connections open on the permissive chain now
    open_http: int = 0  # HTTP connections open on the public listener now
    open_outbound: int = 0  # passthrough connections this sidecar holds to destinations outside the mesh
    protocol: str = "http"  # what its app speaks on `port`: http, http2, grpc (h2c) or tcp
    calls: dict[str, UpstreamTraffic] = field(default_factory=dict)  # what its sidecar sends each upstream
    mesh_size: int = 0  # clusters of other upstreams its sidecar holds: their counters come before any gauge

    def api_object(self) -> dict[str, Any]:
        """The core/v1 Pod the API server answers with."""
        app = {"name": self.labels.get("app", self.name), "ports": [{"name": "http", "containerPort": self.port}]}
        containers: list[dict[str, Any]] = [app]
        statuses = [self._status(app["name"])]
        annotations: dict[str, str] = {"consul.hashicorp.com/connect-inject": "true" if self.injected else "false"}
        init: list[dict[str, Any]] = []
        if self.injected:
            app["readinessProbe"] = {"httpGet": {"path": "/health", "port": READINESS_PORT}, "periodSeconds": 5}
            sidecar: dict[str, Any] = {"name": "consul-dataplane", "ports": []}
            if self.metrics:
                sidecar["ports"].append({"name": "prometheus", "containerPort": METRICS_PORT, "protocol": "TCP"})
            containers.append(sidecar)
            init.append({"name": "consul-connect-inject-init"})
            statuses.append(self._status("consul-dataplane"))
            annotations["consul.hashicorp.com/connect-inject-status"] = "injected"
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": f"{abs(hash((self.namespace, self.name))) % 10**12:012d}-0000-4000-8000-000000000000",
            "labels": dict(self.labels),
            "annotations": annotations,
        }
        if self.terminating:
            meta["deletionTimestamp"] = stamp(self.started + 1)[:19] + "Z"
        ready = "True" if self.ready and not self.terminating else "False"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "containers": containers,
                "initContainers": init,
                "hostNetwork": self.host_network,
                "nodeName": "node-1",
            },
            "status": {
                "phase": self.phase,
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "hostIP": self.node_ip,
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": statuses,
            },
        }

    def _status(self, name: str) -> dict[str, Any]:
        started = stamp(self.started)[:19] + "Z"
        return {"name": name, "ready": self.ready, "state": {"running": {"startedAt": started}}}

    def metrics_text(self) -> str:
        """Envoy's /stats/prometheus (with consul-dataplane's own metrics before it), for the stats the
        checks read and a few it does not. Consul's bootstrap adds the fixed tags local_cluster and
        consul.source.* to every stat (consul-dataplane internal/bootstrap generateStatsTags)."""
        svc = self.labels.get("app", self.name)
        source = (
            'consul_source_namespace="default"',
            'consul_source_partition="default"',
            'consul_source_datacenter="dc1"',
        )
        tags = ",".join([f'local_cluster="{svc}"', f'consul_source_service="{svc}"', *source])
        listener = self.open_plaintext + self.open_http

        def sample(name: str, label: str, value: object) -> str:
            return f"{name}{{{tags},{label}}} {value}"

        http, cluster = "envoy_http_downstream_cx_active", "envoy_cluster_upstream_cx_active"
        active, exposed = "envoy_listener_downstream_cx_active", f"exposed_path_filter_health_{READINESS_PORT}"
        return "\n".join(
            [
                "# TYPE consul_dataplane_envoy_connected gauge",
                "consul_dataplane_envoy_connected 1",
                # Envoy writes every counter, then every gauge (admin/prometheus_stats.cc statsAsPrometheus).
                "# TYPE envoy_tcp_downstream_cx_total counter",
                sample("envoy_tcp_downstream_cx_total", 'envoy_tcp_prefix="permissive_public_listener"', len(self.log)),
                *(line for up, t in sorted(self.calls.items()) for line in t.samples(up, tags)),
                *self._mesh_counters(sample),
                f"# TYPE {cluster} gauge",
                sample(cluster, 'envoy_cluster_name="local_app"', listener),
                sample(cluster, 'envoy_cluster_name="original-destination"', self.open_outbound),
                f"# TYPE {http} gauge",
                sample(http, 'envoy_http_conn_manager_prefix="public_listener"', self.open_http),
                sample(http, f'envoy_http_conn_manager_prefix="{exposed}"', 0),
                f"# TYPE {active} gauge",
                sample(active, f'envoy_listener_address="{self.ip}_{PUBLIC_LISTENER_PORT}"', listener),
                sample(active, f'envoy_listener_address="{self.ip}_{READINESS_PORT}"', 0),
                "",
            ]
        )

    def _mesh_counters(self, sample: Callable[[str, str, object], str]) -> Iterator[str]:
        """Some of Envoy's counters of each cluster (envoy/upstream/upstream.h ALL_CLUSTER_TRAFFIC_STATS,
        ALL_CLUSTER_CONFIG_UPDATE_STATS) for `mesh_size` upstreams named as Consul names them."""
        for stat in _CLUSTER_COUNTERS:
            yield f"# TYPE envoy_cluster_{stat} counter"
            for i in range(self.mesh_size):
                name = f"svc-{i}.default.dc1.internal.11111111-2222-3333-4444-555555555555.consul"
                yield sample(f"envoy_cluster_{stat}", f'envoy_cluster_name="{name}"', i)


_CLUSTER_COUNTERS = (
    "upstream_cx_total",
    "upstream_cx_http1_total",
    "upstream_cx_http2_total",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_destroy",
    "upstream_cx_destroy_local",
    "upstream_cx_destroy_remote",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_tx_bytes_total",
    "upstream_rq_total",
    "upstream_rq_timeout",
    "upstream_rq_retry",
    "upstream_rq_pending_total",
    "upstream_rq_cancelled",
    "membership_change",
    "update_attempt",
    "update_success",
)


# --- one event loop for every loopback server -----------------------------------------------------------------

Handler = Callable[[str, str, Mapping[str, str]], Awaitable[tuple[int, bytes, str] | None]]


class Loopback:
    """One background event loop; every stub listens on it (an HTTP server, or a raw TCP behaviour).
    A process has one (`shared`: the test session's, tests/conftest.py `loopback`); a stub cluster
    closes only its own listeners (`shut`).

    Nothing on the loop's thread formats a traceback: an error of a handler is kept, as one line, in
    `errors`, and `check` raises it in the caller's thread. Formatting one there would call ast.parse
    (CPython 3.11's traceback draws its carets with it), whose recursion counter 3.11.7 keeps per
    interpreter: a test thread's ast.parse at that moment fails with "AST constructor recursion depth
    mismatch"."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._failed)
        self.servers: dict[tuple[str, int], asyncio.base_events.Server] = {}
        self.held: dict[tuple[str, int], list[asyncio.StreamWriter]] = {}  # the "hang" listeners' connections
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _failed(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(f"{context.get('message')}: {context.get('exception')!r}")

    def check(self) -> None:
        """Raise, in the caller's thread, what went wrong on the loop since the last check."""
        errors, self.errors = self.errors, []
        if errors:
            raise RuntimeError("a loopback stub failed: " + "; ".join(errors))

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def listen(
        self, host: str, port: int, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> int:
        async def start() -> int:
            server = await asyncio.start_server(serve, host, port, reuse_address=True)
            bound = server.sockets[0].getsockname()[1]
            self.servers[(host, bound)] = server
            return bound

        return self.run(start())

    def http(self, host: str, port: int, handler: Handler) -> int:
        """An HTTP/1.1 server; `handler` returns (status, body, type), or None to close the connection
        without answering. A connection is kept for the next request unless the client asks to close it
        (urllib always does; ops/kube.py's client keeps one, as it does with an API server)."""

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    line, *rest = head.decode(errors="replace").split("\r\n")
                    method, target, _ = [*line.split(" ", 2), "", ""][:3]
                    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                    if headers.get("content-length", "0").isdigit():
                        await reader.readexactly(int(headers.get("content-length", "0")))
                    answer = await handler(method, target, headers)
                    if answer is None:
                        break
                    status, body, kind = answer
                    close = headers.get("connection", "").lower() == "close"
                    ending = "Connection: close\r\n\r\n" if close else "\r\n"
                    writer.write(
                        f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\n{ending}".encode()
                        + body
                    )
                    await writer.drain()
                    if close:
                        break
            with contextlib.suppress(ConnectionError):
                writer.close()
                await writer.wait_closed()

        return self.listen(host, port, serve)

    def raw(self, host: str, port: int, behaviour: Literal["close", "reset", "alert", "hang", "tls", "h2c"]) -> int:
        """A TCP listener that reads the request, then: close without a byte (a strict sidecar whose TLS
        handshake failed), reset, a TLS alert then close, hold the connection silent, `tls`: a TLS server
        (a strict sidecar's public listener: a ClientHello gets the server's first handshake record, any
        other bytes fail the handshake and the connection closes without a byte), or `h2c`: a plain-text
        HTTP/2 server (a gRPC app: its connection preface, an empty SETTINGS frame, RFC 9113 section 3.4)."""
        held: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            first = b""
            with contextlib.suppress(ConnectionError, TimeoutError):
                first = await asyncio.wait_for(reader.read(4096), 1.0)
            if behaviour == "hang":
                held.append(writer)
                return
            if behaviour == "reset":
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif behaviour == "alert":
                writer.write(bytes([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]))  # TLS alert: protocol_version
            elif behaviour == "tls" and first[:2] == b"\x16\x03":
                # A handshake record opening the ServerHello (RFC 8446 section 5.1: content type 22 and
                # legacy_record_version 0x0303 on every record but the first ClientHello; section 4: handshake
                # type 2, server_hello); the rest is not modelled: the probe reads only the record header.
                writer.write(bytes([0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]))
            elif behaviour == "h2c" and first.startswith(b"PRI * HTTP/2.0"):
                writer.write(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # SETTINGS, no parameters, stream 0
            with contextlib.suppress(ConnectionError):
                writer.close()

        bound = self.listen(host, port, serve)
        self.held[(host, bound)] = held
        return bound

    def shut(self, addresses: Iterable[tuple[str, int]]) -> None:
        """Close these listeners (host, port) and the connections they hold."""
        servers = [self.servers.pop(a) for a in list(addresses) if a in self.servers]

        held = [w for a in list(addresses) for w in self.held.pop(a, [])]

        async def stop() -> None:
            for server in servers:
                server.close()
            for writer in held:
                writer.close()
            for server in servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 1)

        with contextlib.suppress(Exception):
            self.run(stop())

    def close(self) -> None:
        self.shut(list(self.servers))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)
        self.check()


_SHARED: list[Loopback] = []


def shared() -> Loopback:
    """The process's one loop, started on first use (the test session's, a bench run's); its thread is a
    daemon, so it ends with the process."""
    if not _SHARED:
        _SHARED.append(Loopback())
    return _SHARED[0]


def fake_answer(name: str, upstreams: Mapping[str, Mapping[str, Any]] | None = None, code: int = 200) -> dict[str, Any]:
    """fake-service v0.26.0's answer (response/response.go)."""
    answer: dict[str, Any] = {"name": name, "uri": "/", "type": "HTTP", "ip_addresses": ["10.0.1.23"], "code": code}
    if upstreams:
        answer["upstream_calls"] = {uri: {**a, "uri": uri} for uri, a in upstreams.items()}
    return answer


# --- the Kubernetes API and the pods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    names: tuple[str, ...]
    namespace: str | None  # None: cluster-wide (a ClusterRoleBinding)


@dataclass
class FakeService:
    name: str
    namespace: str
    selector: dict[str, str]
    port: int  # the target port
    port_name: str = "http"


class FakeCluster:
    """Pods, Services, the Mesh and RBAC, served as the Kubernetes API serves them, and the pods
    themselves on loopback addresses."""

    def __init__(self, access_log_format: Mapping[str, str], now: float | None = None) -> None:
        self.format = dict(access_log_format)
        self.now = time.time() if now is None else now
        self.pods: list[FakePod] = []
        self.services: list[FakeService] = []
        self.mesh: dict[str, Any] | None = None
        self.rules: dict[str, list[Rule]] = {}  # service account "namespace/name" -> its rules
        self.tokens: dict[str, str] = {}  # token -> service account
        self.requests: list[tuple[str, str, str]] = []  # (service account, method, path)
        self._block, self._claim = _claim_block()
        self._ips = (
            f"127.{self._block}.{(n >> 8) & 255}.{n & 255}" for n in itertools.count(2) if n & 255 not in (0, 1, 255)
        )
        self._ids = itertools.count(1000)
        self.rng = random.Random(17)
        self.net: Loopback | None = None
        self._listening: list[tuple[str, int]] = []
        self.api_url = ""
        self.gateway_url = ""
        self.gateway: list[Callable[[], dict[str, Any]]] = []
        self.failing: dict[str, tuple[int, str]] = {}  # API path prefix -> (HTTP status, message) it answers
        self.silent = 0.0  # seconds the API waits before it answers anything
        # The check's own pod: the kernel sends its loopback connections from 127.0.0.1.
        self.add(FakePod("precheck-job", "mesh-checks", {"job-name": "checks-precheck"}, "127.0.0.1", 0))

    # building -----------------------------------------------------------------------------------

    def next_ip(self) -> str:
        return next(self._ips)

    def add(self, pod: FakePod) -> FakePod:
        pod.started = pod.started or self.now - 3600
        self.pods.append(pod)
        return pod

    def grant(self, account: str, token: str, rules: Iterable[Rule]) -> None:
        self.rules.setdefault(account, []).extend(rules)
        self.tokens[token] = account

    def connection(self, pod: FakePod, chain: Chain, remote: str, when: float, **kw: Any) -> None:
        """A connection or request the pod's sidecar logs, at `when` (when it closed)."""
        local = f"{pod.ip}:{pod.port}" if chain in ("permissive",) else f"{pod.ip}:{PUBLIC_LISTENER_PORT}"
        if chain == "expose":
            local = f"{pod.ip}:{READINESS_PORT}"
        kw.setdefault("path", "/health" if chain == "expose" else "/")
        kw.setdefault("user_agent", "kube-probe/1.35" if chain == "expose" else "Go-http-client/1.1")
        c = Connection(chain, remote, kw.pop("local", local), when - 0.003, connection_id=next(self._ids), **kw)
        pod.log.append((when, render_record(self.format, c, self.rng)))

    def history(self, seconds: float, every: float = 5.0) -> None:
        """What every sidecar logged over the last `seconds`: consul-dataplane's own lines, and kubelet's
        readiness probe every `every` s on the expose-path listener (from the node's address)."""
        for pod in self.pods:
            if not pod.injected:
                continue
            pod.log[:0] = dataplane_lines(pod.started)
            t = max(pod.started, self.now - seconds)
            while t < self.now:
                self.connection(pod, "expose", f"{pod.node_ip}:{40000 + int(t) % 20000}", t)
                t += every
        for pod in self.pods:
            pod.log.sort(key=lambda entry: entry[0])

    def rotate(self, pod: FakePod, keep_seconds: float) -> None:
        """The kubelet rotated the container's log: the current file holds only the last `keep_seconds`."""
        pod.log = [(t, line) for t, line in pod.log if t >= self.now - keep_seconds]

    def named(self, prefix: str) -> list[FakePod]:
        """The pods of a Deployment: those whose name starts with `<deployment>-`."""
        return [p for p in self.pods if p.name.startswith(f"{prefix}-")]

    def pods_of(self, namespace: str, selector: Mapping[str, str]) -> list[FakePod]:
        return [
            p for p in self.pods if p.namespace == namespace and all(p.labels.get(k) == v for k, v in selector.items())
        ]

    def endpoint_slice(self, svc: FakeService) -> dict[str, Any]:
        """The discovery.k8s.io/v1 EndpointSlice the EndpointSlice controller writes for the Service."""
        endpoints = []
        for pod in self.pods_of(svc.namespace, svc.selector):
            if pod.phase != "Running":
                continue
            ready = pod.ready and not pod.terminating
            endpoints.append(
                {
                    "addresses": [pod.ip],
                    "conditions": {"ready": ready, "serving": pod.ready, "terminating": pod.terminating},
                    "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name},
                    "nodeName": "node-1",
                }
            )
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{svc.name}-x7k2p",
                "namespace": svc.namespace,
                "labels": {
                    "kubernetes.io/service-name": svc.name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": svc.port_name, "port": svc.port, "protocol": "TCP"}],
        }

    # serving ------------------------------------------------------------------------------------

    def start(self, net: Loopback | None = None) -> FakeCluster:
        """Listen on `net`, by default the process's one loop (`shared`)."""
        self.net = net = net or shared()
        self.api_url = f"http://127.0.0.1:{self._listen('127.0.0.1', net.http('127.0.0.1', 0, self._api))}"
        self.gateway_url = f"http://127.0.0.1:{self._listen('127.0.0.1', net.http('127.0.0.1', 0, self._gateway))}/"
        for pod in self.pods:
            if pod.ip == "127.0.0.1" or pod.host_network or not pod.port:
                continue
            if pod.injected and pod.mtls == "strict":
                self._listen(pod.ip, net.raw(pod.ip, pod.port, "tls"))
            elif pod.protocol in ("http2", "grpc"):
                self._listen(pod.ip, net.raw(pod.ip, pod.port, "h2c"))
            elif pod.protocol == "tcp":  # a database, say: a TLS ClientHello is not its protocol, it closes
                self._listen(pod.ip, net.raw(pod.ip, pod.port, "close"))
            else:
                self._listen(pod.ip, net.http(pod.ip, pod.port, self._app(pod)))
            if pod.injected and pod.metrics:
                self._listen(pod.ip, net.http(pod.ip, METRICS_PORT, self._metrics(pod)))
        return self

    def _listen(self, host: str, port: int) -> int:
        self._listening.append((host, port))
        return port

    def stop(self) -> None:
        """Close this cluster's listeners and raise what failed on the loop while it served."""
        self._claim.close()
        if self.net is not None:
            self.net.shut(self._listening)
            self._listening.clear()
            self.net.check()

    def _app(self, pod: FakePod) -> Handler:
        async def answer(method: str, target: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
            if pod.injected:  # through the permissive chain: Envoy logs the connection when it closes
                self.connection(pod, "permissive", f"127.0.0.1:{50000 + len(pod.log)}", time.time(), bytes_received=95)
            return 200, json.dumps(fake_answer(pod.answers_as)).encode(), "application/json"

        return answer

    def _metrics(self, pod: FakePod) -> Handler:
        async def answer(method: str, target: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
            # consul-dataplane's bootstrap: route `path: /metrics` -> /stats/prometheus, anything else 404.
            if urllib.parse.urlsplit(target).path != "/metrics":
                return 404, b"", "text/plain"
            return 200, pod.metrics_text().encode(), "text/plain; version=0.0.4"

        return answer

    async def _gateway(self, method: str, target: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        if not self.gateway:
            return 503, b"no healthy upstream", "text/plain"
        answer = self.gateway[0]()
        self.gateway.append(self.gateway.pop(0))
        return 200, json.dumps(answer).encode(), "application/json"

    async def _api(self, method: str, target: str, headers: Mapping[str, str]) -> tuple[int, bytes, str]:
        parts = urllib.parse.urlsplit(target)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
        token = headers.get("authorization", "").removeprefix("Bearer ")
        account = self.tokens.get(token, "")
        self.requests.append((account, method, parts.path))
        if self.silent:
            await asyncio.sleep(self.silent)
        for prefix, (code, message) in self.failing.items():
            if parts.path.startswith(prefix):
                return _status(code, "InternalError", message)
        seg = parts.path.strip("/").split("/")
        try:
            if seg[:2] == ["api", "v1"] and seg[2:3] == ["pods"]:
                return self._list(account, "", "pods", None, self._pods(None, query))
            if seg[:3] == ["api", "v1", "namespaces"] and len(seg) == 5 and seg[4] == "pods":
                return self._list(account, "", "pods", seg[3], self._pods(seg[3], query))
            if seg[:3] == ["api", "v1", "namespaces"] and len(seg) == 7 and seg[4] == "pods" and seg[6] == "log":
                self._allow(account, "", "pods/log", "get", seg[3], seg[5])
                return 200, self._log(seg[3], seg[5], query).encode(), "text/plain"
            if seg[:3] == ["apis", "discovery.k8s.io", "v1"] and len(seg) == 6 and seg[5] == "endpointslices":
                name = query.get("labelSelector", "").removeprefix("kubernetes.io/service-name=")
                slices = [self.endpoint_slice(s) for s in self.services if s.namespace == seg[4] and s.name == name]
                return self._list(account, "discovery.k8s.io", "endpointslices", seg[4], slices)
            if seg[:3] == ["apis", "consul.hashicorp.com", "v1alpha1"] and len(seg) == 7 and seg[5] == "meshes":
                self._allow(account, "consul.hashicorp.com", "meshes", "get", seg[4], seg[6])
                if self.mesh is None:
                    return _status(404, "NotFound", f'meshes.consul.hashicorp.com "{seg[6]}" not found')
                return 200, json.dumps(self.mesh).encode(), "application/json"
        except PermissionError as refused:
            return _status(403, "Forbidden", str(refused))
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _pods(self, namespace: str | None, query: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
        field_ = query.get("fieldSelector", "")
        found = []
        for pod in self.pods:
            if namespace is not None and pod.namespace != namespace:
                continue
            if not all(pod.labels.get(k) == v for k, v in selector.items()):
                continue
            if field_.startswith("status.podIP=") and pod.ip != field_.removeprefix("status.podIP="):
                continue
            found.append(pod.api_object())
        return found

    def _log(self, namespace: str, name: str, query: Mapping[str, str]) -> str:
        pod = next(p for p in self.pods if p.namespace == namespace and p.name == name)
        since = float(query.get("sinceSeconds", 1e12))
        keep = [(t, line) for t, line in pod.log if t >= time.time() - since]
        if query.get("timestamps") == "true":
            return "".join(f"{stamp(t)} {line}\n" for t, line in keep)
        return "".join(f"{line}\n" for _, line in keep)

    def _list(
        self, account: str, group: str, resource: str, namespace: str | None, items: list[dict[str, Any]]
    ) -> tuple[int, bytes, str]:
        self._allow(account, group, resource, "list", namespace, None)
        kind = {"pods": "PodList", "endpointslices": "EndpointSliceList"}[resource]
        body = {
            "apiVersion": "v1" if not group else f"{group}/v1",
            "kind": kind,
            "metadata": {"resourceVersion": "4711"},
            "items": items,
        }
        return 200, json.dumps(body).encode(), "application/json"

    def _allow(
        self, account: str, group: str, resource: str, verb: str, namespace: str | None, name: str | None
    ) -> None:
        for rule in self.rules.get(account, []):
            if rule.namespace is not None and rule.namespace != namespace:
                continue
            granted = group in rule.api_groups and resource in rule.resources and verb in rule.verbs
            if granted and (not rule.names or name in rule.names):
                return
        who = f"system:serviceaccount:{account.replace('/', ':')}" if account else "system:anonymous"
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        raise PermissionError(
            f'{resource} is forbidden: User "{who}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
        )


CLAIM_PORT = 59999


def _claim_block() -> tuple[int, socket.socket]:
    """A /16 of 127.0.0.0/8 for one cluster's pods, held by a socket bound on its first address: clusters
    of other test workers (or other checkouts on this machine) take other blocks."""
    for block in random.SystemRandom().sample(range(16, 250), 234):
        claim = socket.socket()
        try:
            claim.bind((f"127.{block}.0.1", CLAIM_PORT))
        except OSError:
            claim.close()
            continue
        return block, claim
    raise RuntimeError("no free block of loopback addresses for a stub cluster")


def _status(code: int, reason: str, message: str) -> tuple[int, bytes, str]:
    """meta/v1 Status, as the API server refuses a request."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return code, json.dumps(body).encode(), "application/json"


# --- a cluster from the program's rendered objects -----------------------------------------------------------


class Rendered(Protocol):
    """A resource as program/offline.py records it."""

    type: str
    name: str
    inputs: dict[str, Any]


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1:"


def rendered_format(resources: Iterable[Rendered]) -> dict[str, str]:
    """The access-log format the rendered ProxyDefaults configures (Consul's default when it sets none)."""
    for r in resources:
        if r.type == f"{CONSUL}ProxyDefaults":
            text = ((r.inputs.get("spec") or {}).get("accessLogs") or {}).get("jsonFormat")
            if text:
                return json.loads(text)
    raise LookupError("the rendered stack has no ProxyDefaults with an access-log format")


def from_rendered(
    state: Sequence[Rendered],
    checks: Sequence[Rendered] | None = None,
    *,
    retiring: Sequence[Rendered] = (),
    access_log_format: Mapping[str, str] | None = None,
    replicas: int | None = None,
) -> FakeCluster:
    """The cluster a step's check meets: the Deployments, Services and config entries of `state` (what
    runs), the Deployments of `retiring` still running beside them (Pulumi deletes them after the
    postcheck), and the check Jobs' service accounts with the RBAC `checks` renders (default: `state`'s).
    The sidecars log in `access_log_format` (default: the rendered ProxyDefaults')."""
    fmt = dict(access_log_format or rendered_format(state or checks or ()))
    cluster = FakeCluster(fmt)
    modes: dict[tuple[str, str], str] = {}
    for r in state:
        if r.type == f"{CONSUL}ServiceDefaults":
            meta, spec = r.inputs["metadata"], r.inputs.get("spec") or {}
            modes[(meta["namespace"], meta["name"])] = spec.get("mutualTLSMode") or "strict"
        if r.type == f"{CONSUL}Mesh":
            cluster.mesh = {
                "apiVersion": "consul.hashicorp.com/v1alpha1",
                "kind": "Mesh",
                "metadata": r.inputs["metadata"],
                "spec": r.inputs.get("spec") or {},
            }
        if r.type == SERVICE and "selector" in (r.inputs.get("spec") or {}):
            meta, spec = r.inputs["metadata"], r.inputs["spec"]
            port = spec["ports"][0]
            cluster.services.append(
                FakeService(
                    meta["name"],
                    meta.get("namespace", "default"),
                    dict(spec["selector"]),
                    int(port.get("targetPort") or port["port"]),
                    port.get("name", ""),
                )
            )
    _host_network_pods(cluster)
    names = {r.inputs["metadata"]["name"] for r in state if r.type == DEPLOYMENT}
    for r in [
        *(r for r in state if r.type == DEPLOYMENT),
        *(r for r in retiring if r.type == DEPLOYMENT and r.inputs["metadata"]["name"] not in names),
    ]:
        meta, spec = r.inputs["metadata"], r.inputs["spec"]
        template = spec["template"]
        labels = dict(template["metadata"]["labels"])
        annotations = template["metadata"].get("annotations") or {}
        (app,) = template["spec"]["containers"]
        env = {e["name"]: e["value"] for e in app.get("env") or []}
        injected = annotations.get("consul.hashicorp.com/connect-inject") == "true"
        mode = modes.get((meta["namespace"], labels.get("app", "")), "strict")
        for i in range(replicas or int(spec.get("replicas", 1))):
            cluster.add(
                FakePod(
                    f"{meta['name']}-7c9d8b6f5-{'kqwzx'[i % 5]}{i:04d}"[:63],
                    meta["namespace"],
                    labels,
                    cluster.next_ip(),
                    int(app["ports"][0]["containerPort"]),
                    answers_as=env.get("NAME", ""),
                    injected=injected,
                    mtls="permissive" if mode == "permissive" else "strict",
                    upstreams=tuple(u for u in env.get("UPSTREAM_URIS", "").split(",") if u),
                )
            )
    for r in checks if checks is not None else state:
        _rbac(cluster, r, checks if checks is not None else state)
    return cluster


PATCHES = {"kubernetes:apps/v1:DeploymentPatch": "Deployment", "kubernetes:apps/v1:StatefulSetPatch": "StatefulSet"}


def from_adopted(
    run: Run, objects: Mapping[str, Mapping[str, Any]], traffic: Callable[[str, str], UpstreamTraffic] | None = None
) -> FakeCluster:
    """The cluster a step of a team's own workloads meets, once the step's objects are in place: each
    workload as the API server holds it after the step's patch (devtools/workloads.applied: a
    server-side apply merge into the live object of `objects`, what `run_program(cluster=...)` read), its
    pods behind the team's own Service, injected where its pod template says so (consul-k8s v2.0.3 registers
    the port its connect-service-port annotation names, common.PortValue: by name, else by number; the
    Service's targetPort without one),
    accepting plain text where its ServiceDefaults is permissive, its app speaking the ServiceDefaults'
    protocol; and every caller the rendered ServiceIntentions allow sending `traffic(caller, upstream)`
    (default: steady, all answered).
    The rendered demo objects, config entries and the checks' RBAC come from `from_rendered`."""
    from devtools.workloads import applied

    cluster = from_rendered(run.resources)
    entries: dict[tuple[str, str], Mapping[str, Any]] = {}
    callers: dict[str, list[str]] = {}
    for r in run.resources:
        if r.type == f"{CONSUL}ServiceDefaults":
            entries[(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])] = r.inputs.get("spec") or {}
        if r.type == f"{CONSUL}ServiceIntentions":
            dest = r.inputs["spec"]["destination"]["name"]
            for source in r.inputs["spec"].get("sources") or []:
                callers.setdefault(source["name"], []).append(dest)
    for r in run.resources:
        kind = PATCHES.get(r.type)
        if kind is None:
            continue
        ns, name = r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]
        obj = applied(objects[live_key(f"kubernetes:apps/v1:{kind}", f"{ns}/{name}")], r.inputs)
        template = obj["spec"]["template"]
        labels = dict(template["metadata"].get("labels") or {})
        annotations = template["metadata"].get("annotations") or {}
        svc = next(
            o
            for o in objects.values()
            if o.get("kind") == "Service"
            and o["metadata"].get("namespace") == ns
            and o["spec"].get("selector")
            and all(labels.get(k) == v for k, v in o["spec"]["selector"].items())
        )
        service = svc["metadata"]["name"]
        target = svc["spec"]["ports"][0].get("targetPort") or svc["spec"]["ports"][0]["port"]
        ports = [p for c in template["spec"]["containers"] for p in c.get("ports") or []]
        named = annotations.get("consul.hashicorp.com/connect-service-port", target)
        port = next(p for p in ports if p.get("name") == named or str(p["containerPort"]) == str(named))
        spec = entries.get((ns, service), {})
        cluster.services.append(
            FakeService(service, ns, dict(svc["spec"]["selector"]), int(port["containerPort"]), port.get("name", ""))
        )
        for i in range(int(obj["spec"].get("replicas", 1))):
            cluster.add(
                FakePod(
                    f"{name}-5d8c7b9f4-{'kqwzx'[i % 5]}{i:04d}"[:63],
                    ns,
                    labels,
                    cluster.next_ip(),
                    int(port["containerPort"]),
                    injected=annotations.get("consul.hashicorp.com/connect-inject") == "true",
                    mtls="permissive" if spec.get("mutualTLSMode") == "permissive" else "strict",
                    protocol=str(spec.get("protocol") or "http"),
                    calls={
                        up: (traffic or (lambda c, u: UpstreamTraffic()))(service, up)
                        for up in callers.get(service, [])
                    },
                )
            )
    for pod in cluster.pods:  # an upstream's protocol decides what its callers' sidecars count
        for up, t in pod.calls.items():
            t.protocol = next((str(e.get("protocol") or "http") for (_, n), e in entries.items() if n == up), "http")
    return cluster


def _host_network_pods(cluster: FakeCluster) -> None:
    """What answers a look-up of a node's address on EKS: its host-network pods (kubelet probes from it)."""
    for name in ("aws-node-h7x2k", "kube-proxy-9qz4d"):
        cluster.add(
            FakePod(name, "kube-system", {"k8s-app": name.rsplit("-", 1)[0]}, "127.0.1.1", 0, host_network=True)
        )


def _rbac(cluster: FakeCluster, r: Rendered, all_: Sequence[Rendered]) -> None:
    if r.type not in (
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
    ):
        return
    ref = r.inputs["roleRef"]
    kind = "kubernetes:rbac.authorization.k8s.io/v1:" + ref["kind"]
    role_ns = r.inputs["metadata"].get("namespace") if ref["kind"] == "Role" else None
    role = next(
        x
        for x in all_
        if x.type == kind
        and x.inputs["metadata"]["name"] == ref["name"]
        and x.inputs["metadata"].get("namespace") == role_ns
    )
    scope = r.inputs["metadata"].get("namespace") if r.type.endswith(":RoleBinding") else None
    rules = [
        Rule(
            tuple(rule.get("apiGroups") or []),
            tuple(rule.get("resources") or []),
            tuple(rule.get("verbs") or []),
            tuple(rule.get("resourceNames") or []),
            scope,
        )
        for rule in role.inputs["rules"]
    ]
    for s in r.inputs["subjects"]:
        account = f"{s['namespace']}/{s['name']}"
        cluster.grant(account, f"token-{s['name']}", rules)


# --- traffic, as the program's services send it -----------------------------------------------------------


def serve_traffic(cluster: FakeCluster, exposed: str, answering: Mapping[str, Sequence[FakePod]] | None = None) -> None:
    """The API gateway's answers: fake-service through the exposed service and every upstream it calls,
    each hop answered in turn by the pods of its service that answer (`answering`, default: every
    ready pod), as callers reach them through `.service.consul` or the virtual address."""
    by_service: dict[str, list[FakePod]] = {}
    for pod in cluster.pods:
        if pod.port and pod.ready and not pod.terminating and "app" in pod.labels:
            by_service.setdefault(pod.labels["app"], []).append(pod)
    for name, pods in (answering or {}).items():
        by_service[name] = list(pods)
    turns = {name: itertools.cycle(pods) for name, pods in by_service.items() if pods}

    def answer(service: str, depth: int = 0) -> dict[str, Any]:
        pod = next(turns[service])
        calls = {uri: answer(uri.split("//")[1].split(".")[0], depth + 1) for uri in pod.upstreams} if depth < 8 else {}
        return fake_answer(pod.answers_as, calls)

    cluster.gateway = [lambda: answer(exposed)] if exposed in turns else []


GATEWAY_IP = "127.0.1.2"  # the API gateway's pod (consul namespace): it calls over mTLS only


def mesh_traffic(
    cluster: FakeCluster, exposed: str, dialed_directly: Iterable[str], seconds: float, every: float = 10.0
) -> None:
    """What the sidecars logged of the program's own calls over the last `seconds`: the gateway's mTLS
    requests to the exposed service's pods, and each mesh caller's calls to its upstreams' mesh pods,
    in plain text through the permissive chain when it dials their pod IPs without dialedDirectly
    (`.service.consul`), else over mTLS. A caller keeps one such connection open (Go's HTTP client
    pools it), which its sidecar counts as an open passthrough connection."""
    direct = set(dialed_directly)
    mesh = [p for p in cluster.pods if p.injected and p.port]
    for pod in (p for p in mesh if p.labels.get("app") == exposed):
        t = cluster.now - seconds
        while t < cluster.now:
            cluster.connection(pod, "mtls", f"{GATEWAY_IP}:{43000 + int(t) % 9000}", t, peer=spiffe("api-gateway"))
            t += every
    for caller in mesh:
        for uri in caller.upstreams:
            up = uri.split("//")[1].split(".")[0]
            by_dns = ".service.consul" in uri
            for callee in (p for p in mesh if p.labels.get("app") == up):
                plain = by_dns and up not in direct and callee.mtls == "permissive"
                t = cluster.now - seconds
                while t < cluster.now:
                    if plain:
                        cluster.connection(
                            callee, "permissive", f"{caller.ip}:{41000 + int(t) % 9000}", t, bytes_received=103
                        )
                    else:
                        cluster.connection(
                            callee,
                            "mtls",
                            f"{caller.ip}:{42000 + int(t) % 9000}",
                            t,
                            peer=spiffe(caller.labels.get("app", "")),
                            authority=f"{up}.virtual.consul:{callee.port}",
                        )
                    t += every
                if plain:
                    callee.open_plaintext += 1
                    caller.open_outbound += 1
                else:
                    callee.open_http += 1
    for pod in cluster.pods:
        pod.log.sort(key=lambda entry: entry[0])


# --- a step's checks, as the cluster runs them ---------------------------------------------------------------
#
# The Job's rendered command (`python3 -B /checks/mesh_check.py <check>`), environment and script (the
# ConfigMap) against a FakeCluster built from the same rendered program. Two fields of the document name
# the cluster's own addresses and are pointed at the stubs: the API server (`kubernetes`, with a token for
# the Job's service account) and the gateway's URL. Everything else is the rendered document as the Job
# gets it.

JOB = "kubernetes:batch/v1:Job"
CHECK_LABEL = "consul-mesh-migration/check"
WINDOW_HISTORY = 900.0  # seconds of sidecar logs the stub cluster holds before a precheck


@dataclass(frozen=True)
class Step:
    """One `pulumi up` as rendered: what ran before it (None: a fresh stack) and what it renders."""

    before: Run | None
    run: Run

    @property
    def dialed_directly(self) -> list[str]:
        """What the deployed ServiceDefaults carry: the last `up`'s recorded output."""
        return list(self.before.outputs.get("dialedDirectly") or []) if self.before else []


def deployed_outputs(run: Run) -> dict[str, Any]:
    """What a stack reports after an `up`, as its StackReference reads it back."""
    keep = ("phase", "phases", "dialedDirectly")
    return {k: v for k, v in run.outputs.items() if k in keep or k.startswith("seal-")}


def walk(program: Any, targets: Sequence[Mapping[str, Any]], stack: str = "local") -> list[Step]:
    """Render each config of `targets` in turn, each with the outputs of the one before deployed."""
    steps: list[Step] = []
    before: Run | None = None
    for overrides in targets:
        run = program(dict(overrides), stack=stack, deployed=deployed_outputs(before) if before else None)
        assert run.error is None, run.error
        steps.append(Step(before, run))
        before = run
    return steps


def default_rollout(program: Any, stack: str = "local") -> list[Step]:
    return walk(program, [{"phase": p} for p in PHASE_NAMES], stack)


def job(run: Run, kind: str) -> Resource:
    (found,) = [j for j in run.of_type(JOB) if j.inputs["metadata"]["labels"] == {CHECK_LABEL: kind}]
    return found


def document(run: Run, kind: str) -> dict[str, Any]:
    (container,) = job(run, kind).inputs["spec"]["template"]["spec"]["containers"]
    (env,) = container["env"]
    return json.loads(env["value"])


def precheck_cluster(step: Step) -> FakeCluster:
    """The cluster as the precheck meets it: what the last `up` left (the config entries change only
    after the precheck), with the last window of its sidecars' logs and the Job's RBAC as rendered now."""
    return precheck_cluster_in(step, None)


def precheck_cluster_in(step: Step, access_log_format: Mapping[str, str] | None) -> FakeCluster:
    """precheck_cluster, the sidecars logging in `access_log_format` (default: the rendered one)."""
    fmt = access_log_format or rendered_format(step.run.resources)
    cluster = from_rendered(step.before.resources if step.before else [], step.run.resources, access_log_format=fmt)
    cluster.history(WINDOW_HISTORY)
    mesh_traffic(cluster, exposed_service(step.run), step.dialed_directly, WINDOW_HISTORY)
    return cluster


def postcheck_cluster(step: Step) -> FakeCluster:
    """The cluster as the postcheck meets it: every object of the step in place, the versions it retires
    still running (Pulumi deletes them after the postcheck), the gateway answering through them all."""
    cluster = from_rendered(step.run.resources, retiring=step.before.resources if step.before else ())
    serve_traffic(cluster, exposed_service(step.run))
    return cluster


def exposed_service(run: Run) -> str:
    """The service the gateway's HTTPRoute sends `/` to."""
    (route,) = [r for r in run.resources if r.type.endswith(":HTTPRoute")]
    return route.inputs["spec"]["rules"][0]["backendRefs"][0]["name"]


def run_job(
    run: Run,
    kind: str,
    cluster: FakeCluster,
    tmp: Path,
    doc: dict[str, Any] | None = None,
    token_for: str = "",
    in_process: bool = False,
) -> tuple[int, str]:
    """The Job's container, as its pod runs it, against a started `cluster`; (exit code, its one line).
    `token_for`: run with another Job's service account token. `in_process`: call the script's `main` here
    with the Job's environment, instead of its command in a fresh interpreter (the same file: the
    ConfigMap holds meshcheck/mesh_check.py as it is), where a test runs many steps."""
    (container,) = job(run, kind).inputs["spec"]["template"]["spec"]["containers"]
    script = run.one("kubernetes:core/v1:ConfigMap", "checks-script").inputs["data"]["mesh_check.py"]
    mount = tmp / "checks"
    mount.mkdir(parents=True, exist_ok=True)
    (mount / "mesh_check.py").write_text(script)
    tmp.mkdir(parents=True, exist_ok=True)
    token = tmp / f"token-{kind}"
    token.write_text(f"token-{token_for or kind}\n")
    rendered: dict[str, Any] = json.loads(json.dumps(doc if doc is not None else document(run, kind)))
    body: dict[str, Any] = rendered[kind]
    body["kubernetes"] = {"url": cluster.api_url, "token_file": str(token), "ca_file": None}
    if kind == "postcheck" and body.get("gateway"):
        body["gateway"]["url"] = cluster.gateway_url
    command = [sys.executable if c == "python3" else c.replace("/checks", str(mount)) for c in container["command"]]
    env = {e["name"]: e["value"] for e in container["env"]}
    env["MESH_CHECK_EXPECTATION"] = json.dumps(rendered)
    env.update({"MESH_CHECK_TERMINATION_LOG": "", "PATH": "/usr/bin:/bin"})
    if in_process:
        from meshcheck import mesh_check

        assert script == Path(mesh_check.__file__).read_text()
        out = io.StringIO()
        code = mesh_check.main(command[3:], env=env, out=out)
        assert out.getvalue().count("\n") == 1, out.getvalue()
        return code, out.getvalue().strip()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=60)
    assert result.stderr == "", result.stderr
    assert result.stdout.count("\n") == 1, f"not one line: {result.stdout!r}"
    return result.returncode, result.stdout.strip()

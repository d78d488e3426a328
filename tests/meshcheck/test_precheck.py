"""The precheck's caller detection, against recorded Kubernetes API answers (tests/data/precheck/).

The caller signal, as consul-dataplane 2.0.3 gives it: Envoy's access log, which ProxyDefaults
turns on and Consul writes in its default JSON format to the sidecar's stdout (hashicorp/consul
agent/xds/accesslogs/accesslogs.go @05ecf385e25af968d5aee2e1b4621346572c1849; field list quoted in
meshcheck/mesh_check.py), read from the `consul-dataplane` container's log through pods/log with
sinceSeconds=<window>. A plain-text caller shows up there as a record of the permissive filter
chain's TCP proxy (agent/xds/listeners.go @e3f1e855caff092da8bb668f585cb91374843955,
makePermissiveFilterChain / makeTCPProxyFilter, which attaches the access log): upstream_cluster
`local_app`, no requested_server_name (no TLS, so no SNI) and the caller's downstream_remote_address.
The listener statistics the onboarding guide also names (`tcp.permissive_public_listener.*`, Consul's
config-entry warning and consul-k8s's acceptance test permissive_mtls_test.go) only count
connections: they cannot say who called. The samples' formats and sources: tests/data/precheck/README.md.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshcheck import mesh_check
from meshcheck.mesh_check import HttpKube, KubeConfig, access_log_entries, is_plaintext_inbound, remote_ip
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "precheck"
POD = "api-v2-7c9d8b6f5-k2x4p"
LOG = (DATA / f"{POD}.consul-dataplane.log").read_text()
API_PODS = json.loads((DATA / "api-pods.json").read_text())
BY_IP: dict[str, Any] = json.loads((DATA / "pods-by-ip.json").read_text())
FORBIDDEN = (DATA / "forbidden.json").read_bytes()
WINDOW = 900
STEP = "permissive -> strict"


class RecordedKube:
    """The precheck's KubeApi answered from the recorded samples; remembers what was asked."""

    def __init__(self, log: str = LOG, by_ip: dict[str, Any] | None = BY_IP, pods: dict[str, Any] = API_PODS) -> None:
        self.log, self.by_ip, self.pods = log, by_ip, pods
        self.calls: list[tuple[Any, ...]] = []

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace, selector))
        return list(self.pods["items"]) if (namespace, selector) == ("api", "app=api") else []

    def pod_log(self, namespace: str, pod: str, container: str, since_seconds: int) -> str:
        self.calls.append(("pod_log", namespace, pod, container, since_seconds))
        return self.log

    def pods_with_ip(self, ip: str) -> list[dict[str, Any]] | None:
        self.calls.append(("pods_with_ip", ip))
        return None if self.by_ip is None else list(self.by_ip[ip]["items"])


def document(**signal: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "phase": "permissive",
        "precheck": {
            "step": STEP,
            "window_seconds": WINDOW,
            "services": [{"service": "api", "namespace": "api", "selector": "app=api"}],
            "signal": signal,
            "timeouts": {"request": 0.5, "total": 2},
        },
    }


def run(doc: dict[str, Any], kube: Any = None) -> tuple[int, str]:
    out = io.StringIO()
    env = {"MESH_CHECK_EXPECTATION": json.dumps(doc), "MESH_CHECK_TERMINATION_LOG": ""}
    code = mesh_check.main(["precheck"], env=env, kube=kube, out=out)
    text = out.getvalue()
    assert text.count("\n") == 1, f"not exactly one line: {text!r}"
    return code, text.rstrip("\n")


def without(*addresses: str) -> str:
    return "".join(line for line in LOG.splitlines(keepends=True) if not any(a in line for a in addresses))


LEGACY = (
    "legacy/legacy-client-6b8f9d7c5-q9w2e (10.0.2.14) -> api: 3 plain-text connections, last 2026-07-01T10:04:58.502Z"
)
GONE = "10.0.9.99 (no pod has this address) -> api: 1 plain-text connection, last 2026-07-01T10:04:59.870Z"


# --- reading the log --------------------------------------------------------------------------------


def test_only_the_access_log_records_are_read_from_the_container_log() -> None:
    entries = list(access_log_entries(LOG))
    assert len(entries) == 8  # hclog lines, Envoy's text and JSON application log lines are skipped
    assert all(set(e) >= {"downstream_remote_address", "upstream_cluster", "requested_server_name"} for e in entries)


def test_plain_text_inbound_means_local_app_without_sni() -> None:
    kept = [e["downstream_remote_address"] for e in access_log_entries(LOG) if is_plaintext_inbound(e, "local_app")]
    # Not the kubelet probe (exposed_cluster_9091), not web's mTLS request (SNI set).
    assert kept == [
        "10.0.1.40:51902",
        "10.0.2.14:48812",
        "10.0.2.14:48930",
        "10.0.3.7:33410",
        "10.0.2.14:49016",
        "10.0.9.99:60412",
    ]


@pytest.mark.parametrize(
    ("address", "ip"), [("10.0.2.14:48812", "10.0.2.14"), ("[fd00::5]:48812", "fd00::5"), ("fd00::5", "fd00::5")]
)
def test_remote_ip(address: str, ip: str) -> None:
    assert remote_ip(address) == ip


# --- refusing the step ------------------------------------------------------------------------------


def test_a_live_caller_outside_the_mesh_refuses_the_step_naming_caller_and_service() -> None:
    kube = RecordedKube()
    code, line = run(document(), kube)
    assert code == 1
    assert line == (
        f"precheck callers: expected no plain-text caller outside the mesh of api before {STEP}, "
        f"saw {LEGACY}; {GONE} (in the last {WINDOW} s)"
    )
    # Every sidecar log read for the window, and only the meshed pod (api-v1 has no sidecar).
    assert ("pod_log", "api", POD, "consul-dataplane", WINDOW) in kube.calls
    assert [c for c in kube.calls if c[0] == "pod_log"] == [("pod_log", "api", POD, "consul-dataplane", WINDOW)]


def test_the_checks_own_probes_and_callers_in_the_mesh_do_not_count() -> None:
    code, line = run(document(), RecordedKube(log=without("10.0.2.14", "10.0.9.99")))
    assert code == 0, line
    assert line.startswith(
        f"[permissive] precheck ok: no plain-text caller outside the mesh of api in the last {WINDOW} s "
        "(1 sidecar log, 4 access-log records, 2 plain-text; "
        "ignored 1 from callers in the mesh, 1 from the checks' own probes); "
    )


def test_callers_in_the_mesh_count_when_asked() -> None:
    code, line = run(document(count_mesh_callers=True), RecordedKube(log=without("10.0.2.14", "10.0.9.99")))
    assert code == 1
    assert (
        "saw web/web-v1-8f6d7c9b5-m3n8r (10.0.1.40) -> api: 1 plain-text connection, last 2026-07-01T10:02:14.771Z"
        in line
    )


def test_a_caller_in_the_mesh_counts_for_a_service_that_goes_strict_without_dialed_directly() -> None:
    """With no dialedDirectly, web-v1's sidecar keeps sending plain text to the pod IP and is refused."""
    doc = document()
    doc["precheck"]["services"][0]["count_mesh_callers"] = True
    code, line = run(doc, RecordedKube(log=without("10.0.2.14", "10.0.9.99")))
    assert code == 1
    assert "web/web-v1-8f6d7c9b5-m3n8r (10.0.1.40) -> api: 1 plain-text connection" in line


# A meshed pod's call to a destination outside the mesh: the outbound listener's catch-all chain
# (hashicorp/consul agent/xds/listeners.go, the OriginalDestinationClusterName filter chain, built
# with the proxy's access logs while the Mesh allows non-mesh destinations), in Consul's default
# JSON access-log format: a TCP proxy record, so the HTTP fields are null.
OUTSIDE = json.dumps(
    {
        "authority": None,
        "bytes_received": 1420,
        "bytes_sent": 388,
        "connection_termination_details": None,
        "downstream_local_address": "10.0.4.20:5432",
        "downstream_remote_address": "10.0.1.23:53312",
        "duration": 2113,
        "method": None,
        "path": None,
        "protocol": None,
        "request_id": None,
        "requested_server_name": None,
        "response_code": 0,
        "response_code_details": None,
        "response_flags": "-",
        "route_name": None,
        "start_time": "2026-07-01T10:06:41.020Z",
        "upstream_cluster": "original-destination",
        "upstream_host": "10.0.4.20:5432",
        "upstream_local_address": "10.0.1.23:53314",
        "upstream_service_time": None,
        "upstream_transport_failure_reason": None,
        "user_agent": None,
        "x_forwarded_for": None,
    },
    sort_keys=True,
)


def closing_document() -> dict[str, Any]:
    doc = document()
    doc["precheck"]["step"] = "virtual -> hardened"
    doc["precheck"]["services"] = []
    doc["precheck"]["outbound"] = [{"service": "api", "namespace": "api", "selector": "app=api"}]
    return doc


def test_closing_the_mesh_is_refused_while_a_meshed_pod_calls_a_destination_outside_it() -> None:
    """meshDestinationsOnly removes that catch-all chain: the call would fail from then on."""
    code, line = run(closing_document(), RecordedKube(log=LOG + OUTSIDE + "\n"))
    assert code == 1
    assert line == (
        "precheck destinations: expected no call from the mesh to a destination outside it before virtual -> "
        f"hardened closes the Mesh, saw api/{POD} -> 10.0.4.20:5432: 1 connection (in the last {WINDOW} s)"
    )


def test_closing_the_mesh_goes_ahead_when_every_call_stays_in_the_mesh() -> None:
    code, line = run(closing_document(), RecordedKube())
    assert code == 0, line
    assert "no call from the mesh to a destination outside it" in line


def test_without_leave_to_list_pods_the_caller_is_named_by_its_address() -> None:
    code, line = run(document(), RecordedKube(log=without("10.0.1.40", "10.0.3.7", "10.0.9.99"), by_ip=None))
    assert code == 1
    assert line == (
        f"precheck callers: expected no plain-text caller outside the mesh of api before {STEP}, "
        "saw 10.0.2.14 (not allowed to list pods to name it) -> api: 3 plain-text connections, "
        f"last 2026-07-01T10:04:58.502Z (in the last {WINDOW} s)"
    )


def test_no_sidecar_to_read_fails_closed() -> None:
    pods = {"items": [p for p in API_PODS["items"] if p["metadata"]["name"] != POD]}
    code, line = run(document(), RecordedKube(pods=pods))
    assert code == 1
    assert line == (
        "precheck callers: expected pods of api with a consul-dataplane container to read "
        "(app=api in api), saw 1 pods and none with one"
    )


def test_a_step_that_tightens_nothing_reads_nothing() -> None:
    doc = document()
    doc["precheck"]["services"] = []
    kube = RecordedKube()
    assert run(doc, kube) == (
        0,
        f"[permissive] precheck ok: {STEP} tightens no service's plain-text access; nothing to read",
    )
    assert kube.calls == []


# --- the Kubernetes API over HTTP -------------------------------------------------------------------


class FakeApiServer:
    """The API server's answers to the precheck's three GETs, from the samples, on loopback."""

    def __init__(self, forbid_cluster_list: bool = False, fail_list: bool = False, hang: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        api = self
        release = threading.Event()
        self.release = release

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                api.requests.append((parts.path, query, self.headers.get("Authorization")))
                if hang:
                    release.wait(2)
                    return
                if parts.path == "/api/v1/namespaces/api/pods" and not fail_list:
                    self.answer(200, json.dumps(API_PODS).encode())
                elif parts.path == f"/api/v1/namespaces/api/pods/{POD}/log":
                    self.answer(200, LOG.encode(), "text/plain")
                elif parts.path == "/api/v1/pods" and forbid_cluster_list:
                    self.answer(403, FORBIDDEN)
                elif parts.path == "/api/v1/pods":
                    ip = query["fieldSelector"][0].removeprefix("status.podIP=")
                    self.answer(200, json.dumps(BY_IP[ip]).encode())
                else:
                    self.answer(500, b'{"kind":"Status","message":"etcdserver: request timed out","code":500}')

            def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("sa-token\n")
    return str(path)


def with_api(url: str, token: str) -> dict[str, Any]:
    doc = document()
    doc["precheck"]["kubernetes"] = {"url": url, "token_file": token, "ca_file": None}
    return doc


@pytest.fixture
def api_server(request: pytest.FixtureRequest) -> Iterator[FakeApiServer]:
    server = FakeApiServer(**getattr(request, "param", {}))
    yield server
    server.close()


def test_the_precheck_asks_the_api_what_it_should_with_the_service_account_token(
    api_server: FakeApiServer, token: str
) -> None:
    code, line = run(with_api(api_server.url, token))
    assert code == 1 and LEGACY in line and GONE in line
    asked = [(path, query) for path, query, _ in api_server.requests]
    assert asked[:2] == [
        ("/api/v1/namespaces/api/pods", {"labelSelector": ["app=api"]}),
        (f"/api/v1/namespaces/api/pods/{POD}/log", {"container": ["consul-dataplane"], "sinceSeconds": [str(WINDOW)]}),
    ]
    assert sorted(q["fieldSelector"][0] for p, q in asked[2:]) == [
        f"status.podIP={ip}" for ip in ("10.0.1.40", "10.0.2.14", "10.0.3.7", "10.0.9.99")
    ]
    assert {auth for _, _, auth in api_server.requests} == {"Bearer sa-token"}


@pytest.mark.parametrize("api_server", [{"forbid_cluster_list": True}], indirect=True)
def test_a_forbidden_pod_list_leaves_the_address(api_server: FakeApiServer, token: str) -> None:
    assert HttpKube(KubeConfig(api_server.url, token, None), 0.5).pods_with_ip("10.0.2.14") is None
    code, line = run(with_api(api_server.url, token))
    assert code == 1 and "10.0.2.14 (not allowed to list pods to name it) -> api: 3 plain-text connections" in line


@pytest.mark.parametrize("api_server", [{"fail_list": True}], indirect=True)
def test_an_api_error_stops_the_check_with_exit_2(api_server: FakeApiServer, token: str) -> None:
    code, line = run(with_api(api_server.url, token))
    assert (code, line) == (
        2,
        "precheck callers: could not check, listing the pods of api failed: "
        "GET /api/v1/namespaces/api/pods: HTTP 500 etcdserver: request timed out",
    )


@pytest.mark.parametrize("api_server", [{"hang": True}], indirect=True)
def test_a_silent_api_times_out_saying_how_long_it_waited(api_server: FakeApiServer, token: str) -> None:
    code, line = run(with_api(api_server.url, token))
    assert (code, line) == (1, "precheck callers: timed out after 500 ms listing the pods of api")


def test_a_missing_token_says_so(tmp_path: Path) -> None:
    code, line = run(with_api("https://kubernetes.default.svc", str(tmp_path / "none")))
    assert code == 2
    assert line == f"precheck kubernetes: cannot read the token {tmp_path / 'none'}: No such file or directory"

"""The precheck's reading of what Consul's sidecars say, record by record, from records rendered the way
Envoy writes them (devtools/stubs.py: the operators of the configured format, Envoy 1.37's typing, the
filter chains hashicorp/consul agent/xds/listeners.go builds), and its use of the Kubernetes API.

What tells the chains apart (listeners.go, at e3f1e855): makeInboundListener's chain terminates mTLS
(and has no tls_inspector, so `requested_server_name` is empty for mTLS callers too: golden
connect-proxy-with-tproxy-and-permissive-mtls.latest.golden); makePermissiveFilterChain's is a TCP
proxy to `local_app` matched on the service's port, without TLS; an expose path on the service's port
routes to `local_app` as well, on its own listener port (golden expose-paths-local-app-paths.latest.golden;
consul-k8s v2.0.3 webhook/mesh_webhook.go overwriteProbes moves kubelet's readiness probe to 20400).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import stubs
from meshcheck import mesh_check
from meshcheck.mesh_check import AccessLog, Record, Signal, Stats, prometheus, remote_ip, spiffe_service
from migration.entries import ACCESS_LOG_FORMAT

CONSUL_DEFAULT = {
    k: v
    for k, v in ACCESS_LOG_FORMAT.items()
    if k not in ("downstream_tls_version", "downstream_peer_uri_san", "connection_id")
}
POD = "10.0.1.23"


def read(fmt: dict[str, str], c: stubs.Connection, port: int = 9091) -> Record | None:
    line = f"{stubs.stamp(c.start)} {stubs.render_record(fmt, c)}"
    ((_, record),) = AccessLog(Signal(format=ACCESS_LOG_FORMAT)).records(line, port)
    return record


CONNECTIONS = {
    "a caller outside the mesh": (stubs.Connection("permissive", "10.0.2.14:48812", f"{POD}:9091", 1.0), "plaintext"),
    "kubelet's readiness probe": (
        stubs.Connection(
            "expose", "10.0.1.57:39970", f"{POD}:20400", 1.0, path="/health", user_agent="kube-probe/1.35"
        ),
        "probe",
    ),
    "a mesh caller over mTLS": (
        stubs.Connection("mtls", "10.0.1.40:51834", f"{POD}:20000", 1.0, peer=stubs.spiffe("web")),
        "mtls",
    ),
    "a call from the mesh to outside it": (
        stubs.Connection("outbound", f"{POD}:53312", "10.0.4.20:5432", 1.0, upstream="10.0.4.20:5432"),
        "outbound",
    ),
}


@pytest.mark.parametrize("fmt", [ACCESS_LOG_FORMAT, CONSUL_DEFAULT], ids=["the program's format", "Consul's default"])
@pytest.mark.parametrize("what", sorted(CONNECTIONS))
def test_each_chain_reads_as_what_it_is(fmt, what):
    """Both formats: the program's own, and Consul's default one that sidecars write until this `up`'s
    ProxyDefaults reached them (agent/xds/accesslogs/accesslogs.go defaultJSONFormat, 24 keys)."""
    assert len(CONSUL_DEFAULT) == 24
    connection, kind = CONNECTIONS[what]
    record = read(fmt, connection)
    assert record is not None and record.kind == kind
    if kind == "plaintext":
        assert record.remote == "10.0.2.14"
    if kind == "mtls" and fmt is ACCESS_LOG_FORMAT:
        assert spiffe_service(record.peer) == "web"


def test_nothing_in_a_record_marks_mtls_but_the_tls_version():
    """Every inbound chain reaches `local_app`, none sets `requested_server_name` (no tls_inspector on
    the public listener), so the old "no SNI" test called mTLS callers and kubelet plain text."""
    rendered = {what: json.loads(stubs.render_record(ACCESS_LOG_FORMAT, c)) for what, (c, _) in CONNECTIONS.items()}
    inbound = [r for what, r in rendered.items() if "outside it" not in what]
    assert {r["upstream_cluster"] for r in inbound} == {"local_app"}
    assert {r["requested_server_name"] for r in inbound} == {None}
    assert [r["downstream_tls_version"] for r in inbound].count(stubs.TLS_VERSION) == 1


def test_only_access_log_records_are_read_from_a_sidecars_stream():
    """consul-dataplane's hclog lines and Envoy's application log share the container's stream."""
    started = 1_750_000_000.0
    lines = [f"{stubs.stamp(t)} {text}" for t, text in stubs.dataplane_lines(started)]
    lines.append(f"{stubs.stamp(started + 1)} " + json.dumps({"@module": "envoy.main", "@message": "x", "thread": 1}))
    c, _ = CONNECTIONS["a caller outside the mesh"]
    lines.append(f"{stubs.stamp(started + 2)} {stubs.render_record(ACCESS_LOG_FORMAT, c)}")
    found = list(AccessLog(Signal(format=ACCESS_LOG_FORMAT)).records("\n".join(lines), 9091))
    assert [r.kind for _, r in found if r] == ["plaintext"]
    assert found[0][0] == pytest.approx(started, abs=0.001)  # the kubelet's time of each line


def test_a_format_without_the_tls_version_cannot_tell_plain_text_and_says_so():
    with pytest.raises(mesh_check.Invalid, match=r"signal.format: expected the operators %DOWNSTREAM_TLS_VERSION%"):
        AccessLog(Signal(format=CONSUL_DEFAULT))


@pytest.mark.parametrize(
    ("address", "ip"), [("10.0.2.14:48812", "10.0.2.14"), ("[fd00::5]:48812", "fd00::5"), ("fd00::5", "fd00::5")]
)
def test_remote_ip(address, ip):
    assert remote_ip(address) == ip


def test_the_sidecars_statistics_give_the_open_plain_text_connections():
    """listener active - the public listener's HTTP connection manager active = the permissive chain's
    TCP-proxy connections (Envoy: ActiveTcpConnection counts every connection of the listener,
    ConnectionManagerImpl::initializeReadFilterCallbacks only the HTTP ones)."""
    pod = stubs.FakePod(
        "api-v2-x", "api", {"app": "api"}, POD, 9091, injected=True, open_plaintext=2, open_http=3, open_outbound=1
    )
    samples = list(prometheus(pod.metrics_text()))
    listeners = {
        lbl["envoy_listener_address"]: v for n, lbl, v in samples if n == "envoy_listener_downstream_cx_active"
    }
    assert listeners == {f"{POD}_20000": 5, f"{POD}_20400": 0}
    assert all(lbl.get("consul_source_service") == "api" for n, lbl, _ in samples if n.startswith("envoy_"))
    assert Stats(5, 3, 1).plaintext_open == 2


# --- against the Kubernetes API -----------------------------------------------------------------------------

PRECHECK = [
    stubs.Rule(("",), ("pods",), ("list",), (), "api"),
    stubs.Rule(("",), ("pods/log",), ("get",), (), "api"),
    stubs.Rule(("",), ("pods",), ("list",), (), None),
]


def little_cluster(**kw: Any) -> stubs.FakeCluster:
    """api-v2 in the mesh (permissive), its caller web-v1 in the mesh, a client outside the mesh."""
    cluster = stubs.FakeCluster(ACCESS_LOG_FORMAT)
    api = cluster.add(
        stubs.FakePod(
            "api-v2-7c9d8b6f5-k2x4p",
            "api",
            {"app": "api", "version": "v2"},
            cluster.next_ip(),
            9091,
            answers_as="api (mesh)",
            injected=True,
            mtls="permissive",
            **kw,
        )
    )
    web = cluster.add(
        stubs.FakePod(
            "web-v1-8f6d7c9b5-m3n8r", "web", {"app": "web", "version": "v1"}, cluster.next_ip(), 9091, injected=True
        )
    )
    client = cluster.add(
        stubs.FakePod("legacy-client-6b8f9d7c5-q9w2e", "legacy", {"app": "legacy"}, cluster.next_ip(), 8080)
    )
    cluster.history(300)
    for i in range(3):
        cluster.connection(api, "permissive", f"{client.ip}:{48800 + i}", cluster.now - 100 + i)
    cluster.connection(api, "permissive", f"{web.ip}:51902", cluster.now - 50)
    cluster.grant("mesh-checks/precheck", "token-precheck", PRECHECK)
    return cluster


@pytest.fixture
def cluster() -> Iterator[stubs.FakeCluster]:
    c = little_cluster().start()
    yield c
    c.stop()


def document(cluster: stubs.FakeCluster, token: Path, **tightened: Any) -> dict[str, Any]:
    api = mesh_check.Tightened("api", "api", 9091, {"app": "api"}, **tightened)
    pre = mesh_check.Precheck(
        "permissive -> strict",
        Signal(format=ACCESS_LOG_FORMAT),
        (api,),
        window_seconds=900,
        kubernetes=mesh_check.Kubernetes(cluster.api_url, str(token), None),
        timeouts=mesh_check.PreTimeouts(0.5, 3),
    )
    return mesh_check.to_document(mesh_check.Expectation(mesh_check.SCHEMA_VERSION, "permissive", precheck=pre))


@pytest.fixture
def token(tmp_path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-precheck\n")
    return path


def run(doc: dict[str, Any]) -> tuple[int, str]:
    out = io.StringIO()
    code = mesh_check.main(
        ["precheck"], env={"MESH_CHECK_EXPECTATION": json.dumps(doc), "MESH_CHECK_TERMINATION_LOG": ""}, out=out
    )
    text = out.getvalue()
    assert text.count("\n") == 1, text
    return code, text.strip()


def test_a_caller_outside_the_mesh_is_named_and_a_mesh_caller_is_not(cluster, token):
    code, line = run(document(cluster, token))
    assert code == 1
    (client,) = cluster.named("legacy-client")
    assert line.startswith(
        f"precheck callers: expected no plain-text caller outside the mesh of api before permissive -> strict, "
        f"saw legacy/{client.name} ({client.ip}) -> api: 3 plain-text connections, last "
    )
    assert "web/" not in line
    asked = [path for _, _, path in cluster.requests]
    assert asked[:2] == ["/api/v1/namespaces/api/pods", "/api/v1/namespaces/api/pods/api-v2-7c9d8b6f5-k2x4p/log"]


def test_a_mesh_caller_counts_where_it_keeps_no_path(cluster, token):
    code, line = run(document(cluster, token, count_mesh_callers=True))
    assert code == 1 and "web/web-v1-8f6d7c9b5-m3n8r" in line


def test_without_leave_to_list_pods_cluster_wide_the_caller_is_named_by_its_address(token):
    c = little_cluster()
    c.rules["mesh-checks/precheck"] = PRECHECK[:2]
    c.start()
    try:
        code, line = run(document(c, token))
    finally:
        c.stop()
    (client,) = c.named("legacy-client")
    assert (
        code == 1 and f"saw {client.ip} (not allowed to list pods to name it) -> api: 3 plain-text connections" in line
    )


def test_an_api_error_says_the_check_cannot_run(cluster, token):
    cluster.failing["/api/v1/namespaces/api/pods"] = (500, "etcdserver: request timed out")
    assert run(document(cluster, token)) == (
        2,
        "cannot check: precheck kubernetes: listing the pods app=api in api failed: GET /api/v1/namespaces/api/pods: "
        "HTTP 500 etcdserver: request timed out",
    )


def test_a_silent_api_times_out_saying_how_long_it_waited(cluster, token):
    cluster.silent = 2
    assert run(document(cluster, token)) == (1, "precheck: timed out after 500 ms listing the pods app=api in api")


def test_a_missing_token_says_so(cluster, tmp_path):
    missing = tmp_path / "none"
    assert run(document(cluster, missing)) == (
        2,
        f"cannot check: precheck kubernetes: cannot read the token {missing}: No such file or directory",
    )


def test_pods_without_a_sidecar_to_read_fail_closed(token):
    c = stubs.FakeCluster(ACCESS_LOG_FORMAT)
    c.add(stubs.FakePod("api-v2-7c9d8b6f5-k2x4p", "api", {"app": "api"}, c.next_ip(), 9091))
    c.grant("mesh-checks/precheck", "token-precheck", PRECHECK)
    c.start()
    try:
        code, line = run(document(c, token))
    finally:
        c.stop()
    assert (code, line) == (
        1,
        "precheck callers: expected pods of api with a consul-dataplane container to read (app=api in api), "
        "saw 1 pod and none with one",
    )


def test_a_node_address_is_said_to_be_one(token):
    """A host-network pod, or traffic kube-proxy forwarded from a node (its source is the node's)."""
    c = little_cluster()
    (api,) = c.named("api-v2")
    c.add(
        stubs.FakePod("kube-proxy-9qz4d", "kube-system", {"k8s-app": "kube-proxy"}, "127.0.1.1", 0, host_network=True)
    )
    c.connection(api, "permissive", "127.0.1.1:40001", c.now - 10)
    c.start()
    try:
        code, line = run(document(c, token))
    finally:
        c.stop()
    assert code == 1
    assert (
        "127.0.1.1 (a node's address: a host-network pod, or traffic kube-proxy forwarded from the node) -> api: 1"
        in line
    )


def test_a_sidecar_of_a_large_mesh_is_read_whole(token):
    """A sidecar with hundreds of upstreams answers more than a MiB of statistics, every counter before
    the listener's gauges (Envoy admin/prometheus_stats.cc statsAsPrometheus): read cut at a MiB, the
    open plain-text connections would read as none."""
    c = stubs.FakeCluster(ACCESS_LOG_FORMAT)
    api = stubs.FakePod(
        "api-v2-7c9d8b6f5-k2x4p", "api", {"app": "api"}, c.next_ip(), 9091, injected=True, mtls="permissive"
    )
    c.add(dataclasses.replace(api, open_plaintext=2, mesh_size=300))
    c.history(300)
    c.grant("mesh-checks/precheck", "token-precheck", PRECHECK)
    assert len(c.named("api-v2")[0].metrics_text()) > mesh_check.MAX_BODY
    c.start()
    try:
        code, line = run(document(c, token, count_mesh_callers=True))
    finally:
        c.stop()
    assert code == 1 and "saw 2 open on api/api-v2-7c9d8b6f5-k2x4p" in line, line


def test_a_step_that_tightens_nothing_reads_nothing(cluster, token):
    doc = document(cluster, token)
    doc["precheck"]["services"] = []
    assert run(doc) == (
        0,
        "[permissive] precheck ok: permissive -> strict tightens no service's plain-text access; nothing to read",
    )
    assert cluster.requests == []

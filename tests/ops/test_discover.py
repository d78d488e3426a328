"""make discover (ops/discover.py): a draft `services` config from a cluster's API answers and sidecar logs.

The cluster is devtools/cluster.py's recorded one, served on loopback: its answers are held to the
strict Kubernetes 1.35 schemas below, and its sidecar logs are Consul's access-log records (see
that module). discover reads it through ops/kube.py over HTTP, as it reads a real cluster.
"""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from devtools import stubs
from devtools.cluster import LISTS, Server, fleet_of
from meshcheck.mesh_check import CONSUL_DEFAULT_FORMAT
from migration.entries import ACCESS_LOG_FORMAT
from ops import discover, kube

SMALL = fleet_of(20)  # gw, 4 front services, 8 back-ends (the first 10 injected: all 8), 7 leaves


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, str]]:
    server = Server(SMALL)
    url = server.start()
    yield server, url
    server.shutdown()


@pytest.fixture(scope="module")
def drafted(served, tmp_path_factory) -> tuple[str, dict, Server, int]:
    """`python -m ops.discover` against the loopback cluster, by a kubeconfig with a token."""
    server, url = served
    config = tmp_path_factory.mktemp("kube") / "config"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "recorded",
                "contexts": [{"name": "recorded", "context": {"cluster": "recorded", "user": "reader"}}],
                "clusters": [{"name": "recorded", "cluster": {"server": url}}],
                "users": [{"name": "reader", "user": {"token": "read-only"}}],
            }
        )
    )
    out = config.parent / "draft.yaml"
    pages = kube.PAGE
    kube.PAGE = 7  # a page smaller than every list: the client must follow `continue`
    try:
        code = discover.main(["--kubeconfig", str(config), "--out", str(out)])
    finally:
        kube.PAGE = pages
    text = out.read_text()
    return text, yaml.safe_load(text), server, code


@pytest.mark.parametrize("plural", sorted(LISTS))
def test_every_recorded_answer_is_what_the_api_server_of_kubernetes_1_35_would_send(plural):
    """kubernetes-validate's strict schemas (additionalProperties false): a field made up fails."""
    first = SMALL.page(plural, None, 5, None)
    assert first["kind"] == LISTS[plural][1] and first["apiVersion"] == LISTS[plural][0]
    assert all("kind" not in i and "apiVersion" not in i for i in first["items"])  # a list names them once
    for token in (None, "5"):
        kubernetes_validate.validate(SMALL.page(plural, None, 5, token), "1.35", strict=True)


def test_discover_only_reads_and_follows_the_api_servers_chunking(drafted):
    _, _, server, code = drafted
    assert code == 0
    assert server.refused == []
    lists = [g for g in server.gets if not g.endswith("/log")]
    assert len(lists) > len({g for g in lists})  # the same list asked again: its next page
    logs = [g for g in server.gets if g.endswith("/log")]
    assert len(logs) == len(SMALL.injected_pods())  # one log per injected pod, nothing else


def test_the_draft_names_each_workload_behind_its_service_and_what_its_sidecar_saw(drafted):
    text, doc, _, _ = drafted
    services = {s["name"]: s for s in doc["consul-mesh-migration:services"]}
    assert doc["consul-mesh-migration:gateway"] == {"service": "gw"}  # in the mesh, and nobody calls it
    assert services["gw"]["upstreams"] == ["f0", "f1", "f2", "f3"]  # its outbound mTLS clusters
    assert "migrates" not in services["f0"]  # injected, and no plain-text caller
    assert services["f0"]["upstreams"] == ["b0", "b4"]  # pod IPs dialed through original-destination
    # b0 is injected but accepts plain text (the permissive chain), so it is still migrating.
    assert services["b0"] == {
        "name": "b0",
        "namespace": "team-0",
        "port": 8080,
        "migrates": True,
        "upstreams": ["c0"],
        "workload": {"kind": "Deployment", "name": "b0"},
        "protocol": "grpc",
    }
    assert "protocol grpc (port name grpc-api)" in text
    assert services["c0"]["port"] == 5432 and "StatefulSet team-0/c0" in text


def test_callers_outside_the_mesh_are_drafted_or_listed(drafted):
    text, doc, _, _ = drafted
    services = {s["name"]: s for s in doc["consul-mesh-migration:services"]}
    # A CronJob's pod is named after the CronJob (its Job's owner), in its own namespace.
    assert services["report-0"] == {"name": "report-0", "outside": "job", "namespace": "team-0", "upstreams": ["b0"]}
    assert "192.168.40.7 -> b3: 3 plain-text connection(s)" in text
    assert services["f0"]["destinations"] == [{"name": "ext-203-0-113-10-443", "host": "203.0.113.10", "port": 443}]
    assert "left out: Deployment team-1/orphan: no Service selects its pods" in text
    assert "left out: Deployment team-2/twice: Services twice, twice-alt all select its pods" in text


def test_make_plan_accepts_the_draft(drafted):
    """What `make plan` refuses it refuses while reading the config (program.config); then it plans."""
    from migration.plan import plan
    from program.config import parse_config

    _, doc, _, _ = drafted
    cfg = parse_config(
        {
            "services": doc["consul-mesh-migration:services"],
            "gateway": doc["consul-mesh-migration:gateway"],
        }
    )
    rollout = plan(cfg.fleet(), cfg.target())
    assert rollout.waves[-1]["gw"].value == "hardened"
    assert rollout.blocked[0].startswith("'b0' stops at permissive: 'report-0' (job, outside the mesh)")


class Logs:
    """A cluster whose one sidecar logs `lines`."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def list(self, resource: kube.Resource, namespace: str | None = None) -> Iterator[dict]:
        yield from ()

    def log_lines(self, namespace: str, pod: str, container: str, since_seconds: int) -> Iterator[str]:
        yield from self.lines


def _draft(name: str) -> discover.Draft:
    workload = discover.Workload("Deployment", name, name, {"app": name}, [name], True, 1)
    return discover.Draft(name, name, workload, discover.Port("http", 80, 9091, None), "tcp", "")


@pytest.mark.parametrize(
    "fmt", [ACCESS_LOG_FORMAT, CONSUL_DEFAULT_FORMAT], ids=["the project's format", "Consul's default format"]
)
def test_a_record_means_to_discover_what_it_means_to_the_precheck(fmt):
    """One reader (meshcheck/mesh_check.py AccessLog). A cluster the program has not configured yet writes
    Consul's default format, with no TLS field: there only the port tells the chains apart, since a tcp
    service's mTLS chain is a TCP proxy like the permissive one, with no method (consul
    agent/xds/listeners.go makeInboundListener, makePermissiveFilterChain)."""
    api, web, legacy = "10.0.1.23", "10.0.1.40", "10.0.2.14"
    connections = [
        stubs.Connection("mtls", f"{web}:51834", f"{api}:20000", 1.0, peer=stubs.spiffe("web"), tcp=True),
        stubs.Connection("permissive", f"{legacy}:48812", f"{api}:9091", 2.0),
        stubs.Connection("expose", "10.0.1.57:39970", f"{api}:20400", 3.0, path="/health", user_agent="kube-probe"),
        stubs.Connection("outbound", f"{api}:53312", "10.0.4.20:5432", 4.0, upstream="10.0.4.20:5432"),
    ]
    lines = [stubs.render_record(fmt, c) + "\n" for c in connections]
    drafts = {name: _draft(name) for name in ("api", "web")}
    inv = discover.Inventory([], drafts, {web: ("service", "web")}, [], [("api", "api-0", "api", 9091)])
    seen = discover.read_sidecars(Logs(lines), inv, 3600)
    assert dict(seen.edges) == {("service:/web", "api", "mtls"): 1, (f"address:/{legacy}", "api", "plaintext"): 1}
    assert (seen.records, seen.probes, dict(seen.outside_calls)) == (4, 1, {("api", "10.0.4.20:5432"): 1})


@pytest.mark.parametrize(
    ("name", "app", "expected"),
    [
        ("grpc-api", None, "grpc"),
        ("http2", None, "http2"),
        ("web", "kubernetes.io/h2c", "http2"),
        ("tcp-db", None, "tcp"),
        ("https", None, "tcp"),
        ("metrics", None, "http"),
    ],
)
def test_a_protocol_guess_follows_app_protocol_then_the_port_name(name, app, expected):
    assert discover.protocol_of(discover.Port(name, 80, 80, app))[0] == expected


def test_the_kubeconfig_is_read_as_kubectl_reads_it(tmp_path):
    plugin = tmp_path / "get-token"
    status = {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "status": {"token": "k8s-aws-v1.x"},
    }
    plugin.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({status!r}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    config = {
        "current-context": "a",
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u"}},
            {"name": "b", "context": {"cluster": "c", "user": "t"}},
        ],
        "clusters": [
            {"name": "c", "cluster": {"server": "https://example.eks.amazonaws.com/", "insecure-skip-tls-verify": True}}
        ],
        "users": [
            {
                "name": "u",
                "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}},
            },
            {"name": "t", "user": {"tokenFile": str(tmp_path / "token")}},
        ],
    }
    (tmp_path / "token").write_text("from-a-file\n")
    path = tmp_path / "config"
    path.write_text(json.dumps(config))
    exec_creds = kube.load_kubeconfig(str(path))
    assert (exec_creds.server, exec_creds.token, exec_creds.insecure) == (
        "https://example.eks.amazonaws.com",
        "k8s-aws-v1.x",
        True,
    )
    assert kube.load_kubeconfig(str(path), "b").token == "from-a-file"
    with pytest.raises(kube.KubeError, match="no context 'z'; contexts: a, b"):
        kube.load_kubeconfig(str(path), "z")


def test_a_failed_read_is_one_line_with_the_api_servers_message(served, capsys, tmp_path):
    _, url = served
    client = kube.ReadOnlyKube(kube.Credentials(server=url))
    with pytest.raises(
        kube.KubeError, match="GET /api/v1/configmaps: HTTP 404 the server could not find the requested resource"
    ):
        list(client.list(kube.Resource("/api/v1", "configmaps")))
    missing = tmp_path / "none"
    assert discover.main(["--kubeconfig", str(missing)]) == 1
    assert capsys.readouterr().err.startswith(f"discover: kubeconfig {Path(missing)}")

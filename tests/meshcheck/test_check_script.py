"""The postcheck of meshcheck/mesh_check.py against real servers on loopback that answer like fake-service.

What "refused" means for a plain-text call to a strict sidecar, from Consul's xDS source
(hashicorp/consul agent/xds/listeners.go, commit e3f1e855caff092da8bb668f585cb91374843955):

- makeInboundListener builds the public listener (port 20000, where transparent proxy's iptables
  REDIRECT sends every inbound connection) with one filter chain that has no match criteria, then
  finalizePublicListenerFromConfig -> injectConnectTLSForPublicListener sets the mTLS
  DownstreamTlsContext as the transport socket of every chain. A strict sidecar therefore accepts
  the TCP connection, the TLS handshake fails on the plain-text request bytes, and Envoy closes the
  connection without any HTTP response (the brief said "no filter chain matches"; in fact the one
  chain matches and its TLS fails: the client sees the same thing).
- Only with MutualTLSMode == permissive does makePermissiveFilterChain add a second chain, matched
  on `destination_port == <service port>` (UseOriginalDst recovers the port the caller dialed), whose
  TCP proxy (stat prefix `permissive_public_listener`) passes the bytes to `local_app` unmodified.

consul-k8s's own acceptance test agrees (hashicorp/consul-k8s v2.0.3,
acceptance/framework/k8s/deploy.go CheckStaticServerConnectionFailing): a plain-text curl to a
strict server fails with "(52) Empty reply from server", "(56) Recv failure: Connection reset by
peer" or "(7) Failed to connect". So the script counts a refused connection, a close or a reset
before any HTTP status line (also after non-HTTP bytes such as a TLS alert) as refused, and any
HTTP status line as accepted; a probe that gets neither in time is a timeout, which fails.

fake-service v0.26.0's answer (response/response.go): `name`, `uri`, `code`, `error` and
`upstream_calls`, a map from the called URI to the upstream's own answer, nested one level a hop.
"""

from __future__ import annotations

import ast
import asyncio
import io
import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import stubs
from meshcheck import mesh_check
from meshcheck.mesh_check import probe_plaintext

SCRIPT = Path(mesh_check.__file__)
API_URI = "http://api.service.consul:9091"
TINY = 0.2  # where a test waits for a timeout; answers that should come get 2 s


# --- servers on loopback (devtools/stubs.py) ------------------------------------------------------------


def fake_answer(name: str, upstreams: dict[str, dict[str, Any]] | None = None, code: int = 200) -> dict[str, Any]:
    return stubs.fake_answer(name, upstreams, code)


def web_calling(api_name: str) -> dict[str, Any]:
    return fake_answer("web (mesh)", {API_URI: fake_answer(api_name)})


def gateway(net: stubs.Loopback, answers: Callable[[int], tuple[int, Any]], delay: float = 0.0) -> str:
    """An HTTP server whose n-th answer is answers(n): (status, JSON document or raw bytes)."""
    count = itertools.count()

    async def handler(method: str, target: str, headers: Any) -> tuple[int, bytes, str]:
        if delay:
            await asyncio.sleep(delay)
        status, body = answers(next(count))
        return status, body if isinstance(body, bytes) else json.dumps(body).encode(), "application/json"

    return f"http://127.0.0.1:{net.http('127.0.0.1', 0, handler)}/"


@pytest.fixture(scope="module")
def servers(loopback: stubs.Loopback) -> Iterator[dict[str, Any]]:
    net = loopback
    before = set(net.servers)
    made: dict[str, Any] = {
        "fine": gateway(net, lambda n: (200, web_calling("api (mesh)" if n % 2 else "api (non-mesh)"))),
        "api-only-mesh": gateway(net, lambda n: (200, web_calling("api (mesh)"))),
        # 18 answers from api (mesh), 2 from api (non-mesh), in every run of 20
        "mostly-mesh": gateway(
            net, lambda n: (200, web_calling("api (non-mesh)" if n % 20 in (3, 11) else "api (mesh)"))
        ),
        "one-legacy": gateway(net, lambda n: (200, web_calling("api (non-mesh)" if n % 20 == 7 else "api (mesh)"))),
        "upstream-down": gateway(
            net,
            lambda n: (
                500,
                {
                    "name": "web (mesh)",
                    "code": 500,
                    "upstream_calls": {
                        API_URI: {"uri": API_URI, "code": -1, "error": "Error communicating with upstream service"}
                    },
                },
            ),
        ),
        "bad-hop": gateway(
            net, lambda n: (200, fake_answer("web (mesh)", {API_URI: fake_answer("api (mesh)", code=503)}))
        ),
        "not-json": gateway(net, lambda n: (200, b"<html>no healthy upstream</html>")),
        "no-name": gateway(net, lambda n: (200, {"code": 200})),
        "deeper": gateway(
            net,
            lambda n: (
                200,
                fake_answer(
                    "web (mesh)",
                    {API_URI: fake_answer("api (mesh)", {"http://db.service.consul:5432": fake_answer("db (mesh)")})},
                ),
            ),
        ),
        "slow": gateway(net, lambda n: (200, web_calling("api (mesh)")), delay=0.05),
        "plain-api": gateway(net, lambda n: (200, fake_answer("api (non-mesh)"))),
        "plain-503": gateway(net, lambda n: (503, b"upstream connect error")),
    }
    for behaviour in ("close", "reset", "alert", "hang"):
        made[behaviour] = f"http://127.0.0.1:{net.raw('127.0.0.1', 0, behaviour)}/"  # type: ignore[arg-type]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        made["closed"] = f"http://127.0.0.1:{s.getsockname()[1]}/"
    yield made
    net.shut(set(net.servers) - before)


def url(servers: dict[str, Any], name: str) -> str:
    return servers[name]


POSTCHECK = [stubs.Rule(("", "discovery.k8s.io"), ("pods", "endpointslices"), ("list",), (), None)]


@pytest.fixture(scope="module")
def api_server() -> Iterator[str]:
    """The Kubernetes API of a cluster where every version `expectation` names has a ready pod."""
    cluster = stubs.FakeCluster({})
    for svc, count in (("web", 1), ("api", 2), ("db", 1)):
        cluster.services.append(stubs.FakeService(svc, svc, {"app": svc}, 9091))
        for i in range(count):
            cluster.add(
                stubs.FakePod(f"{svc}-{i}-6b8f9d7c5-q9w2e", svc, {"app": svc, "n": str(i)}, cluster.next_ip(), 9091)
            )
    cluster.grant("mesh-checks/postcheck", "token-postcheck", POSTCHECK)
    cluster.start()
    yield cluster.api_url
    cluster.stop()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sa") / "token"
    path.write_text("token-postcheck\n")
    return str(path)


KUBE: dict[str, mesh_check.Kubernetes] = {}


@pytest.fixture(autouse=True)
def _kube(api_server: str, token: str) -> None:
    KUBE["api"] = mesh_check.Kubernetes(api_server, token, None)


def host_port(address: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(address)
    return parts.hostname or "", parts.port or 80


# --- running the script -----------------------------------------------------------------------------


def expectation(
    gateway_url: str,
    names: dict[str, list[str]] | None = None,
    *,
    requests: int = 20,
    tolerance: float = 0.4,
    settle: float = 0.0,
    total: float = 10.0,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """A postcheck through the gateway only (no pods to probe): web, and api with its versions' names."""
    names = names or {"web": ["web (mesh)"], "api": ["api (mesh)", "api (non-mesh)"]}
    pods = {"web": 1, "api": 2, "db": 1}  # api_server's

    def version(svc: str, i: int) -> mesh_check.Version:
        named = names[svc][i] if i < len(names[svc]) else None  # a pod not named here: allowed, not looked for
        return mesh_check.Version(
            f"{svc}-{i}", {"app": svc, "n": str(i)}, "running" if named else "retiring", None, named
        )

    services = tuple(
        mesh_check.Service(svc, svc, 9091, {"app": svc}, tuple(version(svc, i) for i in range(pods[svc])))
        for svc in names
    )
    post = mesh_check.Postcheck(
        services,
        mesh_check.Gateway(gateway_url, "web", tuple(names), requests, tolerance),
        KUBE["api"],
        mesh_check.PostTimeouts(timeout, timeout, settle, total),
    )
    return mesh_check.to_document(mesh_check.Expectation(mesh_check.SCHEMA_VERSION, "permissive", post))


def run(doc: object, check: str = "postcheck", **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    env = {"MESH_CHECK_EXPECTATION": json.dumps(doc), "MESH_CHECK_TERMINATION_LOG": ""}
    code = mesh_check.main([check], env=env, out=out, **kwargs)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), f"not exactly one line: {text!r}"
    return code, text.rstrip("\n")


ONLY_MESH = {"web": ["web (mesh)"], "api": ["api (mesh)"]}


# --- through the gateway ----------------------------------------------------------------------------


def test_both_versions_of_the_permissive_phase_are_seen(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "fine")))
    assert code == 0, line
    assert f"20 requests through {url(servers, 'fine')} in " in line
    assert 'api {"api (mesh)": 10, "api (non-mesh)": 10}; web {"web (mesh)": 20}' in line
    assert line.endswith("in all") and "1 round," in line


def test_an_unexpected_upstream_name_is_named_with_the_counts_seen(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "mostly-mesh"), ONLY_MESH))
    assert code == 1
    assert line == (
        'postcheck upstreams api: expected {"api (mesh)"}, saw {"api (mesh)": 18, "api (non-mesh)": 2} in 20 requests'
    )


def test_two_running_versions_must_both_be_seen(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "api-only-mesh")))
    assert code == 1
    assert line == (
        'postcheck upstreams api: expected {"api (mesh)", "api (non-mesh)"} each in at least 10% of '
        'api\'s 20 answers, saw {"api (mesh)": 20, "api (non-mesh)": 0} in 20 requests'
    )


def test_tolerance_sets_the_least_share_of_each_version(servers: dict[str, Any]) -> None:
    # 19 to 1: below 1/2 - 0.4 = 10% (2 of 20) ...
    code, line = run(expectation(url(servers, "one-legacy")))
    assert code == 1 and '"api (non-mesh)": 1}' in line
    # ... but enough when the tolerance only asks that each version is seen.
    code, line = run(expectation(url(servers, "one-legacy"), tolerance=0.5))
    assert code == 0, line


def test_names_at_every_level_of_upstream_calls_count(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "deeper"), ONLY_MESH, requests=3))
    assert code == 1
    assert line == (
        'postcheck upstreams: expected calls only to {"api", "web"}, '
        'saw calls to db answering {"db (mesh)": 3} in 3 requests'
    )
    names = {**ONLY_MESH, "db": ["db (mesh)"]}
    code, line = run(expectation(url(servers, "deeper"), names, requests=3))
    assert code == 0 and 'db {"db (mesh)": 3}' in line


def test_a_5xx_names_the_failing_hop(servers: dict[str, Any]) -> None:
    gateway = url(servers, "upstream-down")
    code, line = run(expectation(gateway))
    assert code == 1
    assert line == (
        f"postcheck gateway: expected HTTP 200 from {gateway}, saw HTTP 500 (request 1 of 20): "
        f'api at {API_URI} answered code -1, error "Error communicating with upstream service"'
    )


def test_a_failed_hop_fails_even_when_the_gateway_answers_200(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "bad-hop"), ONLY_MESH))
    assert code == 1
    assert line == (
        f'postcheck gateway: expected code 200 at every hop, saw api ("api (mesh)") at {API_URI} answered code 503 '
        "(request 1 of 20)"
    )


@pytest.mark.parametrize(
    ("server", "saw"),
    [
        ("not-json", 'saw "<html>no healthy upstream</html>" (request 1 of 20)'),
        ("no-name", 'saw "{\\"code\\": 200}" (request 1 of 20)'),
    ],
)
def test_an_answer_that_is_not_fake_service_json_fails(servers: dict[str, Any], server: str, saw: str) -> None:
    code, line = run(expectation(url(servers, server)))
    assert code == 1
    assert line == f"postcheck gateway: expected fake-service JSON with a name from {url(servers, server)}, {saw}"


def test_a_refused_gateway_connection_fails(servers: dict[str, Any]) -> None:
    gateway = url(servers, "closed")
    code, line = run(expectation(gateway))
    assert (code, line) == (
        1,
        f"postcheck gateway: expected HTTP 200 from {gateway}, saw connection refused (request 1 of 20)",
    )


def test_a_gateway_that_never_answers_times_out_saying_how_long_it_waited(servers: dict[str, Any]) -> None:
    gateway = url(servers, "hang")
    code, line = run(expectation(gateway, timeout=TINY))
    assert (code, line) == (1, f"postcheck gateway: timed out after 200 ms waiting for {gateway} (request 1 of 20)")


def test_the_whole_postcheck_keeps_to_its_budget(servers: dict[str, Any]) -> None:
    started = time.monotonic()
    code, line = run(expectation(url(servers, "slow"), ONLY_MESH, total=0.3))
    assert time.monotonic() - started < 1.0
    assert code == 1
    assert line.startswith(
        f"postcheck: timed out after 300 ms (its whole budget) waiting for {url(servers, 'slow')} (request "
    )


# --- plain text from outside the mesh ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "verdict", "detail"),
    [
        ("closed", "refused", "connection refused"),
        ("close", "refused", "connection closed without a response"),
        ("reset", "refused", "connection reset"),
        ("alert", "refused", "connection closed after 7 non-HTTP bytes"),
        ("plain-api", "accepted", "HTTP 200"),
        ("plain-503", "accepted", "HTTP 503"),
    ],
)
def test_plaintext_probe_verdicts(servers: dict[str, Any], server: str, verdict: str, detail: str) -> None:
    probe = probe_plaintext(*host_port(url(servers, server)), 2.0)
    assert (probe.verdict, probe.detail) == (verdict, detail)


def test_plaintext_probe_times_out_on_silence(servers: dict[str, Any]) -> None:
    with pytest.raises(TimeoutError):
        probe_plaintext(*host_port(url(servers, "hang")), TINY)


# --- settling, input, output ------------------------------------------------------------------------


def test_a_failing_round_is_retried_until_config_has_settled(loopback: stubs.Loopback) -> None:
    # The first 20 answers still come from the legacy version, as right after Envoy got new config.
    flipping = gateway(loopback, lambda n: (200, web_calling("api (non-mesh)" if n < 20 else "api (mesh)")))
    try:
        code, line = run(expectation(flipping, ONLY_MESH, settle=5.0), sleep=lambda s: None)
    finally:
        loopback.shut([host_port(flipping)])
    assert code == 0, line
    assert "2 rounds," in line


def test_the_last_failure_is_reported_once_settle_is_over(servers: dict[str, Any]) -> None:
    code, line = run(expectation(url(servers, "mostly-mesh"), ONLY_MESH, settle=0.2))
    assert code == 1
    assert line.startswith(
        'postcheck upstreams api: expected {"api (mesh)"}, saw {"api (mesh)": 18, "api (non-mesh)": 2}'
    )
    assert line.endswith("]") and " rounds over " in line


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        ("not json", "expectation: not JSON (Expecting value: line 1 column 1 (char 0))"),
        ({"version": 1, "phase": "strict"}, "expectation document.version: expected 2, got 1"),
        ({"version": 2, "phase": "strict"}, "expectation document.postcheck: missing"),
        ({"version": 2, "phase": "strict", "postcheck": {}}, "expectation document.postcheck.services: missing"),
        (
            {"version": 2, "phase": "strict", "postcheck": {"services": [], "gateway": {"requests": 20}}},
            "expectation document.postcheck.gateway.url: missing",
        ),
        (
            {
                "version": 2,
                "phase": "strict",
                "postcheck": {"services": [], "gateway": {"url": "ftp://x/", "exposed": "web", "reached": ["web"]}},
            },
            'expectation document.postcheck.gateway.url: expected an http(s) URL, got "ftp://x/"',
        ),
        (
            {
                "version": 2,
                "phase": "strict",
                "postcheck": {
                    "services": [],
                    "gateway": {"url": "http://gw/", "exposed": "web", "reached": ["web"], "tolerance": 2},
                },
            },
            "expectation document.postcheck.gateway.tolerance: expected a number in [0, 1], got 2",
        ),
        (
            {
                "version": 2,
                "phase": "strict",
                "postcheck": {
                    "services": [
                        {
                            "service": "api",
                            "namespace": "api",
                            "port": 9091,
                            "selector": {},
                            "versions": [{"version": "v", "labels": {}, "role": "gone"}],
                        }
                    ]
                },
            },
            "expectation document.postcheck.services[0].versions[0].role: "
            'expected one of running, retiring, got "gone"',
        ),
        (
            {"version": 2, "phase": "strict", "postcheck": {"services": [], "extra": 1}},
            "expectation document.postcheck.extra: not a field here; "
            "the fields: services, gateway, kubernetes, timeouts, upstreams, traffic",
        ),
    ],
)
def test_a_bad_expectation_exits_2_naming_the_field(doc: object, line: str) -> None:
    out = io.StringIO()
    text = doc if isinstance(doc, str) else json.dumps(doc)
    code = mesh_check.main(["postcheck"], env={"MESH_CHECK_EXPECTATION": text}, out=out)
    assert (code, out.getvalue()) == (2, f"cannot check: {line}\n")


def test_the_document_is_written_and_read_by_one_schema() -> None:
    doc = expectation("http://gw/", requests=4)
    assert mesh_check.to_document(mesh_check.parse_expectation(doc)) == doc


def test_the_line_is_also_the_containers_termination_message(servers: dict[str, Any], tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    termination.write_text("")
    expect = tmp_path / "expectation.json"
    expect.write_text(json.dumps(expectation(url(servers, "closed"))))
    out = io.StringIO()
    env = {"MESH_CHECK_TERMINATION_LOG": str(termination)}
    assert mesh_check.main(["postcheck", "--expectation", str(expect)], env=env, out=out) == 1
    assert termination.read_text() == out.getvalue().rstrip("\n")


def test_the_script_runs_alone_in_a_fresh_interpreter(servers: dict[str, Any], tmp_path: Path) -> None:
    """As in the Job: the file by itself (a ConfigMap key), the expectation from a file."""
    alone = tmp_path / "mesh_check.py"
    alone.write_text(SCRIPT.read_text())
    expect = tmp_path / "expectation.json"
    expect.write_text(json.dumps(expectation(url(servers, "fine"), requests=4)))
    env = {"MESH_CHECK_EXPECTATION_FILE": str(expect), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-I", "-B", str(alone), "postcheck"], capture_output=True, text=True, env=env, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(
        "[permissive] postcheck ok: plain text on every ready pod as expected (none probed)"
    )
    assert " 4 requests through " in result.stdout


def test_the_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)

"""Both checks as the cluster runs them (tests/meshcheck/stubs.py: the rendered Job's command, script and
document) against the loopback cluster of devtools/stubs.py, built from the same rendered program: its
Deployments and Services, consul-k8s's injection, the sidecars' access logs rendered through the
ProxyDefaults format the program renders, their statistics, the gateway, and the Jobs' RBAC.

On a healthy cluster every step of the default rollout and of the planner's race-free order passes
both checks. On a broken one, each check fails with one line that names the cause.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from devtools import stubs
from migration import entries
from migration.plan import plan
from program.config import parse_config, project_keys
from program.offline import stack_config

# docs/concepts/fleet.md's fleet of five: a chain web -> orders -> payments, web -> catalog and
# search -> catalog; search and web in the mesh from the start. Its race-free order has a wave where
# orders goes strict while web, its last caller on service DNS, moves to virtual.
FIVE = [
    {"name": "payments", "namespace": "billing", "migrates": True},
    {"name": "orders", "migrates": True, "upstreams": ["payments"]},
    {"name": "catalog", "migrates": True},
    {"name": "search", "upstreams": ["catalog"]},
    {"name": "web", "upstreams": ["orders", "catalog"]},
]


def race_free_targets(stack: str = "local") -> list[dict[str, Any]]:
    """The planner's waves for the fleet of five, as the config `make advance` sets for each."""
    base = {"services": FIVE}
    cfg = parse_config(project_keys(stack_config(stack, base)))
    waves = plan(cfg.fleet(), cfg.target()).waves
    return [base, *({**base, **cfg.selecting(w)} for w in waves)]


@pytest.fixture(scope="module")
def rollout(program) -> list[stubs.Step]:
    return stubs.default_rollout(program)


@pytest.fixture(scope="module")
def race_free(program) -> list[stubs.Step]:
    return stubs.walk(program, race_free_targets())


def check(
    step: stubs.Step, kind: str, tmp: Path, cluster: stubs.FakeCluster | None = None, in_process: bool = False
) -> tuple[int, str]:
    cluster = cluster or (stubs.precheck_cluster(step) if kind == "precheck" else stubs.postcheck_cluster(step))
    cluster.start()
    try:
        return stubs.run_job(step.run, kind, cluster, tmp, in_process=in_process)
    finally:
        cluster.stop()


def phase(step: stubs.Step) -> str:
    return str(step.run.outputs["phase"])


@pytest.mark.parametrize("kind", ["precheck", "postcheck"])
@pytest.mark.parametrize("index", range(5))
def test_every_step_of_the_default_rollout_passes_on_a_healthy_cluster(rollout, index, kind, tmp_path):
    code, line = check(rollout[index], kind, tmp_path)
    assert code == 0, line
    assert line.startswith(f"[{phase(rollout[index])}] {kind} ok: ")


def test_every_step_of_the_race_free_order_passes_on_a_healthy_cluster(race_free, tmp_path):
    """Twelve Jobs: each runs the script's main here, with its rendered environment (the steps above run
    the rendered command itself)."""
    assert len({str(s.run.outputs["phases"]) for s in race_free}) == len(race_free) > 5
    for i, step in enumerate(race_free):
        for kind in ("precheck", "postcheck"):
            code, line = check(step, kind, tmp_path / f"{i}-{kind}", in_process=True)
            assert code == 0, (i, kind, line)


def settled(program, step: stubs.Step) -> stubs.Step:
    """The same step with `verify.settleSeconds: 0`: a broken cluster stays broken, no need to wait it out."""
    assert step.before is not None
    overrides = {"phase": step.run.outputs["phase"], "verify": {"settleSeconds": 0}}
    run = program(overrides, stack="local", deployed=stubs.deployed_outputs(step.before))
    assert run.error is None, run.error
    return stubs.Step(step.before, run)


@pytest.fixture(scope="module")
def strict(program, rollout) -> stubs.Step:
    """permissive -> strict, the step that makes api refuse plain text and retires api-v1."""
    return settled(program, rollout[2])


def test_the_strict_step_reads_api_s_sidecar_and_ignores_its_mesh_caller_and_kubelet(strict, tmp_path):
    code, line = check(strict, "precheck", tmp_path)
    assert code == 0, line
    # web-v1 dials api.service.consul (pod IPs, plain text while api is permissive): dialedDirectly keeps
    # it on mTLS at strict, so it is a caller in the mesh that is not cut off. Kubelet's probes reach the
    # expose-path listener, the check's own probe comes from mesh-checks.
    assert "no plain-text caller outside the mesh of api in the last 900 s" in line
    assert "179 kubelet probes" in line and "ignored 89 from callers in the mesh, 1 from the checks' own probes" in line
    assert "1 plain-text connection open now (statistics of 1 sidecar)" in line


def legacy_client(cluster: stubs.FakeCluster, service: str, count: int = 3) -> stubs.FakePod:
    """A client outside the mesh that calls `service` in plain text through its permissive sidecars."""
    client = cluster.add(
        stubs.FakePod("legacy-client-6b8f9d7c5-q9w2e", "legacy", {"app": "legacy-client"}, cluster.next_ip(), 8080)
    )
    for pod in cluster.named(f"{service}-v2"):
        for i in range(count):
            cluster.connection(pod, "permissive", f"{client.ip}:{48800 + i}", cluster.now - 60 + i, bytes_received=78)
    return client


def test_a_plain_text_caller_outside_the_mesh_refuses_the_strict_step_naming_it(strict, tmp_path):
    cluster = stubs.precheck_cluster(strict)
    client = legacy_client(cluster, "api")
    code, line = check(strict, "precheck", tmp_path, cluster)
    assert code == 1
    assert line.startswith(
        f"precheck callers: expected no plain-text caller outside the mesh of api before -> strict, "
        f"saw legacy/legacy-client-6b8f9d7c5-q9w2e ({client.ip}) -> api: 3 plain-text connections, last "
    )
    assert line.endswith("(in the last 900 s)")


def test_records_in_consul_s_default_format_are_read_too(strict, tmp_path):
    """The first `up` after an upgrade: the sidecars still log in Consul's default format
    (hashicorp/consul agent/xds/accesslogs/accesslogs.go, defaultJSONFormat), the program's own
    reaching them only with this `up`'s ProxyDefaults, after the precheck."""
    default = {k: v for k, v in entries.ACCESS_LOG_FORMAT.items() if k not in NEW_KEYS}
    assert len(default) == 24
    cluster = stubs.precheck_cluster_in(strict, default)
    client = legacy_client(cluster, "api")
    code, line = check(strict, "precheck", tmp_path, cluster)
    assert code == 1 and f"legacy/legacy-client-6b8f9d7c5-q9w2e ({client.ip}) -> api: 3 plain-text connections" in line
    code, line = check(strict, "precheck", tmp_path, stubs.precheck_cluster_in(strict, default))
    assert code == 0, line
    assert "179 kubelet probes" in line


NEW_KEYS = ("downstream_tls_version", "downstream_peer_uri_san", "connection_id")


def test_a_long_lived_plain_text_connection_the_mesh_cannot_account_for_refuses_the_step(strict, tmp_path):
    """Envoy logs a TCP-proxy connection when it closes (consul agent/xds/listeners.go makeTCPProxyFilter
    sets no access_log_options): one opened before the window and still open left no record."""
    cluster = stubs.precheck_cluster(strict)
    (api,) = cluster.named("api-v2")
    api.open_plaintext += 2  # beside web-v1's pooled connection, which its sidecar counts
    code, line = check(strict, "precheck", tmp_path, cluster)
    assert code == 1
    assert line == (
        "precheck open connections: expected no plain-text connection to api open now that the mesh cannot "
        "account for before -> strict (its callers in the mesh hold at most 1 passthrough connection), saw "
        f"3 open on api/{api.name} (Envoy logs such a connection only when it closes, so its caller is not named)"
    )


def test_a_rotated_log_is_said_to_cover_less_than_the_window(strict, tmp_path):
    cluster = stubs.precheck_cluster(strict)
    (api,) = cluster.named("api-v2")
    cluster.rotate(api, 300)
    code, line = check(strict, "precheck", tmp_path, cluster)
    assert code == 0, line
    assert re.search(
        r"no plain-text caller outside the mesh of api in the last 30[0-9] s only \(logs that start later than the ",
        line,
    )
    assert re.search(rf"window, as the kubelet serves the current file only: api/{api.name} 30[0-9] s\)", line)
    assert "in the last 900 s" not in line


def test_a_retired_version_still_answering_after_the_step_fails_the_next_postcheck(program, rollout, tmp_path):
    """strict -> virtual, with api-v1 (retired by permissive -> strict) still running behind api."""
    virtual = settled(program, rollout[3])
    assert virtual.before is not None
    cluster = stubs.from_rendered(
        virtual.run.resources, retiring=[*virtual.before.resources, *rollout[1].run.resources]
    )
    stubs.serve_traffic(cluster, "web")
    (v1,) = cluster.named("api-v1")
    code, line = check(virtual, "postcheck", tmp_path, cluster)
    assert code == 1
    assert line.startswith(
        f"postcheck endpoints api: expected only api-v2 behind Service api/api, saw api/{v1.name} ({v1.ip}) ready, "
        "which no version of this step selects"
    )


def test_a_strict_service_answering_plain_text_on_one_pod_of_two_fails(strict, tmp_path):
    cluster = stubs.from_rendered(strict.run.resources, retiring=strict.before.resources, replicas=2)
    stubs.serve_traffic(cluster, "web")
    wrong, _ = cluster.named("api-v2")
    wrong.mtls = "permissive"  # its sidecar did not get strict (a stale config, say)
    code, line = check(strict, "postcheck", tmp_path, cluster)
    assert code == 1
    assert line == (
        f"postcheck plaintext api-v2: expected every ready pod of api-v2 to refuse plain text, saw api/{wrong.name} "
        f"({wrong.ip}:9091) accept it: HTTP 200 (1 of 2 pods)"
    )


def test_a_service_with_no_ready_pod_fails(strict, tmp_path):
    cluster = stubs.from_rendered(strict.run.resources, retiring=strict.before.resources)
    stubs.serve_traffic(cluster, "web")
    for pod in cluster.named("api-v2"):
        pod.ready = False
    code, line = check(strict, "postcheck", tmp_path, cluster)
    assert code == 1
    assert line == (
        "postcheck endpoints api: expected a ready pod of api-v2 behind Service api/api, saw none "
        "(1 endpoint of it, 1 ready endpoint in all)"
    )


def test_the_retiring_version_may_answer_or_not(strict, tmp_path):
    cluster = stubs.postcheck_cluster(strict)
    code, line = check(strict, "postcheck", tmp_path, cluster)
    assert code == 0 and "retiring, still ready: api-v1 1" in line and '"api (non-mesh)": 10' in line
    drained = stubs.postcheck_cluster(strict)
    for pod in drained.named("api-v1"):
        pod.terminating = True  # in its preStop: no longer ready, no longer in DNS
    stubs.serve_traffic(drained, "web")
    code, line = check(strict, "postcheck", tmp_path, drained)
    assert code == 0 and "retiring" not in line and 'api {"api (mesh)": 20}' in line


def test_a_check_runs_with_its_own_grants_only(strict, tmp_path):
    """Each Job's service account may do what its rendered Role and bindings grant, nothing more: the
    postcheck's token cannot read a sidecar's log."""
    cluster = stubs.precheck_cluster(strict).start()
    try:
        doc = stubs.document(strict.run, "precheck")
        code, line = stubs.run_job(strict.run, "precheck", cluster, tmp_path, doc, token_for="postcheck")
    finally:
        cluster.stop()
    assert code == 2
    assert line.startswith("cannot check: precheck kubernetes: reading the consul-dataplane log of api/api-v2-")
    assert 'HTTP 403 pods/log is forbidden: User "system:serviceaccount:mesh-checks:postcheck" cannot get' in line


def test_closing_the_mesh_is_refused_while_a_meshed_pod_calls_outside_it(rollout, tmp_path):
    hardened = rollout[4]
    cluster = stubs.precheck_cluster(hardened)
    (web,) = cluster.named("web-v2")
    cluster.connection(
        web, "outbound", f"{web.ip}:53312", cluster.now - 30, upstream="10.0.4.20:5432", local="10.0.4.20:5432"
    )
    code, line = check(hardened, "precheck", tmp_path, cluster)
    assert code == 1
    assert line == (
        "precheck destinations: expected no call from the mesh to a destination outside it before -> hardened "
        f"closes the Mesh, saw web/{web.name} -> 10.0.4.20:5432: 1 connection (in the last 900 s); once it "
        "closes only a terminating gateway serves such a call: declare the host in the caller's "
        "services[i].destinations and dial it at <name>.virtual.consul, or keep a service held back"
    )

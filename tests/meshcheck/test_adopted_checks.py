"""The checks of a team's own workloads, as the cluster runs them: the rendered Job's command and document
(devtools/stubs.py run_job) against a loopback cluster built from what the program read and rendered
(devtools/stubs.py from_adopted: each workload with its patch applied, behind the team's Service).

A team's workload answers with its own body, not fake-service's, so each step is proven by what every
meshed workload has: a plain-text probe of every pod in the protocol it speaks (HTTP, HTTP/2 as gRPC
sends it, a TLS ClientHello for tcp), its callers' sidecar statistics for it between two readings
(consul-dataplane's merged metrics, named as Envoy and consul-dataplane's tag extraction name them),
and, for the gateway's service, the route's success rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import stubs
from migration.phases import PHASE_NAMES
from program.offline import Run, run_program
from tests.program.test_adoption import team, team_cluster

# The window between the two readings of the callers' sidecars, and the settle time, short for a test:
# config keys, so the rendered document carries them as a stack would.
QUICK = {"trafficSeconds": 0.2, "settleSeconds": 1, "postcheckSeconds": 10}


def render(phase: str, deployed: str | None) -> Run:
    run = run_program(
        {"phase": phase, "services": team(), "verify": QUICK},
        stack="local",
        cluster=team_cluster(),
        deployed={"phase": deployed} if deployed else None,
    )
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def rollout() -> list[Run]:
    return [render(p, PHASE_NAMES[i - 1] if i else None) for i, p in enumerate(PHASE_NAMES)]


def postcheck(
    run: Run, tmp: Path, cluster: stubs.FakeCluster | None = None, in_process: bool = True
) -> tuple[int, str]:
    cluster = cluster or stubs.from_adopted(run, team_cluster())
    stubs.serve_traffic(cluster, "web")
    cluster.start()
    try:
        return stubs.run_job(run, "postcheck", cluster, tmp, in_process=in_process)
    finally:
        cluster.stop()


def test_the_postcheck_of_a_team_fleet_reads_its_pods_and_its_callers_not_fake_service(rollout):
    doc: dict[str, Any] = stubs.document(rollout[2], "postcheck")["postcheck"]
    protocols = {s["service"]: s["protocol"] for s in doc["services"]}
    assert protocols == {"stock": "tcp", "orders": "grpc", "web": "http"}
    assert all(v.get("answers_as") is None for s in doc["services"] for v in s["versions"])
    assert doc["gateway"]["answers"] == "any"
    assert {u["service"]: [c["service"] for c in u["callers"]] for u in doc["upstreams"]} == {
        "stock": ["orders"],
        "orders": ["web"],
    }


@pytest.mark.parametrize("index", range(len(PHASE_NAMES)))
def test_every_step_of_a_team_fleet_passes_on_a_healthy_cluster(rollout, index, tmp_path):
    code, line = postcheck(rollout[index], tmp_path)
    assert code == 0, line
    assert "postcheck ok: " in line
    if index >= PHASE_NAMES.index("permissive"):  # orders is injected, so web's sidecar counts its requests
        assert "callers' sidecars: " in line and "orders 100.0% of" in line


def test_the_rendered_command_runs_the_strict_step(rollout, tmp_path):
    code, line = postcheck(rollout[2], tmp_path, in_process=False)
    assert code == 0, line


def test_a_strict_grpc_service_with_one_pod_still_taking_plain_text_fails_naming_the_pod(rollout, tmp_path):
    """orders is strict after the step; one of its four pods kept a permissive sidecar: its app answers
    the HTTP/2 preface a gRPC client sends in plain text."""
    cluster = stubs.from_adopted(rollout[2], team_cluster())
    (odd, *_rest) = [p for p in cluster.pods if p.labels.get("app") == "orders"]
    odd.mtls = "permissive"
    code, line = postcheck(rollout[2], tmp_path, cluster)
    assert code == 1, line
    assert odd.name in line and "accept" in line


def test_a_strict_tcp_service_whose_pod_is_no_tls_server_fails(rollout, tmp_path):
    """stock speaks tcp: a strict sidecar answers a TLS ClientHello as a TLS server; one that does not
    passes the bytes to the database, which closes."""
    cluster = stubs.from_adopted(rollout[2], team_cluster())
    pod = next(p for p in cluster.pods if p.labels.get("app") == "stock")
    pod.mtls = "permissive"
    code, line = postcheck(rollout[2], tmp_path, cluster)
    assert code == 1, line
    assert pod.name in line


def test_callers_seeing_errors_after_the_step_fail_it_with_their_success_rate(rollout, tmp_path):
    cluster = stubs.from_adopted(
        rollout[2],
        team_cluster(),
        traffic=lambda caller, up: stubs.UpstreamTraffic(errors=5) if up == "orders" else stubs.UpstreamTraffic(),
    )
    code, line = postcheck(rollout[2], tmp_path, cluster)
    assert code == 1, line
    assert line.startswith("postcheck callers orders: expected at least 99.0%")
    assert "failed: 5xx or connect failures" in line


def test_a_tcp_upstream_is_judged_by_its_callers_connect_failures(rollout, tmp_path):
    cluster = stubs.from_adopted(
        rollout[2],
        team_cluster(),
        traffic=lambda c, up: stubs.UpstreamTraffic(connect_failures=1) if up == "stock" else stubs.UpstreamTraffic(),
    )
    code, line = postcheck(rollout[2], tmp_path, cluster)
    assert code == 1, line
    assert line.startswith("postcheck callers stock:") and "connection" in line


def test_a_caller_at_virtual_still_dialing_pod_ips_fails(rollout, tmp_path):
    """At virtual, web's own code dials orders.virtual.consul (the variable the team named); new
    connections to orders' pod IPs (the passthrough cluster dialedDirectly gives) mean it does not."""
    cluster = stubs.from_adopted(
        rollout[3],
        team_cluster(),
        traffic=lambda c, up: stubs.UpstreamTraffic(pod_ips=1) if up == "orders" else stubs.UpstreamTraffic(),
    )
    code, line = postcheck(rollout[3], tmp_path, cluster)
    assert code == 1, line
    assert line.startswith("postcheck callers orders: expected web to dial orders.virtual.consul only")


def test_callers_that_send_nothing_leave_their_part_unjudged_and_say_so(rollout, tmp_path):
    cluster = stubs.from_adopted(
        rollout[2], team_cluster(), traffic=lambda c, up: stubs.UpstreamTraffic(requests=0, connections=0)
    )
    code, line = postcheck(rollout[2], tmp_path, cluster)
    assert code == 0, line
    assert "too few to judge" in line

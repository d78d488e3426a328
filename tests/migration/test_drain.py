"""A version being deleted keeps serving until Consul and every DNS cache on the path have dropped it.

Without this, the strict step deletes api-v1 while catalog sync still lists it in api.service.consul:
consul-k8s v2.0.3 catalog sync writes to Consul only every -consul-write-interval (30 s unless set;
control-plane/subcommand/sync-catalog/command.go, flag consul-write-interval), so its instance stays
passing after the pod is gone. Under transparent proxy the caller's TCP connect completes on its own
sidecar, so it cannot fall back to another address: every request handed that address fails.
"""

from __future__ import annotations

import pytest

from migration import drain
from migration.phases import PHASE_NAMES

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_catalog_sync_writes_to_consul_every_five_seconds(program):
    """ConsulSyncer.Run (control-plane/catalog/to-consul/syncer.go) calls syncFull every SyncPeriod, which is
    the write interval: the terminating endpoint's critical check and a removed endpoint's deregistration
    (scheduled by watchService every SyncPeriod/4) reach Consul only then."""
    release = program({}, stack="local").one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["values"]["syncCatalog"]["consulWriteInterval"] == "5s"
    assert drain.catalog_removal_bound(5) == 6.25  # watchService's poll, then the next syncFull


def test_the_consul_zone_cache_in_coredns_is_no_longer_than_the_drain_allows(program):
    """CoreDNS keeps a .consul answer up to the block's cache (its minimum for a TTL-0 answer is 5 s)."""
    corefile = program({}, stack="local").one("kubernetes:core/v1:ConfigMapPatch").inputs["data"]["Corefile"]
    consul_block = corefile.split("consul:53 {")[1]
    assert f"cache {drain.CONSUL_ZONE_CACHE_S}\n" in consul_block
    assert drain.CONSUL_ZONE_CACHE_S <= 5


def test_pre_stop_outlasts_the_catalog_write_and_the_dns_cache_and_the_grace_period_covers_it():
    assert drain.catalog_removal_bound() + drain.CONSUL_ZONE_CACHE_S < drain.PRE_STOP_S
    assert drain.TERMINATION_GRACE_S > drain.PRE_STOP_S
    # The chart's own default would need 30 / 4 + 30 + 5 s: the short interval is what makes it practical.
    assert drain.pre_stop_seconds(write_interval_s=30) > 40


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_version_sleeps_through_its_drain_with_a_grace_period_to_match(program, phase):
    """The kubelet's own sleep action: an exec `sleep` fails silently (FailedPreStopHook, then SIGTERM at
    once) in an image without a shell, and fake-service exits on SIGTERM without finishing requests."""
    for dep in program({"phase": phase}, stack="local").of_type(DEPLOYMENT):
        pod = dep.inputs["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": drain.PRE_STOP_S}}
        assert pod["terminationGracePeriodSeconds"] == drain.TERMINATION_GRACE_S


def test_a_mesh_version_keeps_its_sidecar_until_the_app_has_answered_its_last_request(program):
    """consul-dataplane (release/2.0.x, pkg/consuldp lifecycle gracefulShutdown) drains at SIGTERM but keeps
    accepting for its shutdown grace period, then quits: it must not quit before the app's preStop ends."""
    for dep in program({"phase": "permissive"}, stack="local").of_type(DEPLOYMENT):
        annotations = dep.inputs["spec"]["template"]["metadata"]["annotations"]
        if annotations["consul.hashicorp.com/connect-inject"] == "true":
            grace = int(annotations["consul.hashicorp.com/sidecar-proxy-lifecycle-shutdown-grace-period-seconds"])
            assert drain.PRE_STOP_S < grace <= drain.TERMINATION_GRACE_S


@pytest.mark.parametrize(
    ("phase", "api_synced"),
    [("discovery", True), ("permissive", True), ("strict", False), ("virtual", False), ("hardened", False)],
)
def test_a_service_is_synced_into_the_catalog_only_while_it_runs_outside_the_mesh(program, phase, api_synced):
    """consul-k8s v2.0.3 catalog sync registers every EndpointSlice address of a synced Service, mesh pods
    included (control-plane/catalog/to-consul/resource.go, registerServiceInstance), and Consul's docs ask
    that it be enabled only for services that are not injected. api has a legacy version outside the mesh
    in discovery and permissive only; web never has one. `service-sync: "false"` makes catalog sync drop
    what it registered (resource.go Upsert -> doDelete, shouldSync parses the annotation); the chart's
    default is off (syncCatalog.default false), so only a Service saying "true" is registered at all."""
    run = program({"phase": phase}, stack="local")
    services = {r.k8s_name: r for r in run.of_type("kubernetes:core/v1:Service")}
    sync = "consul.hashicorp.com/service-sync"
    assert services["web"].inputs["metadata"]["annotations"] == {sync: "false"}
    assert services["api"].inputs["metadata"]["annotations"] == {sync: "true" if api_synced else "false"}
    (consul,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"].endswith("consul")]
    assert consul.inputs["values"]["syncCatalog"]["default"] is False

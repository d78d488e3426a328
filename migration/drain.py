"""How long a version that is being removed keeps serving: until Consul and every DNS cache on the
path have dropped it, so no caller is handed an address that is already gone.

A legacy version leaves Consul through catalog sync, which writes only every `-consul-write-interval`
(consul-k8s v2.0.3 control-plane/catalog/to-consul/syncer.go: `ConsulSyncer.Run` calls `syncFull`
every SyncPeriod; `watchService` notices a removed endpoint every SyncPeriod/4 and schedules its
deregistration for the next `syncFull`; a terminating endpoint is re-registered with a critical
readiness check at the next `syncFull`). Worst case: SyncPeriod/4 + SyncPeriod. Then CoreDNS may
serve the old answer for its `consul` zone cache. Only after both may the app stop.
"""

from __future__ import annotations

import math

# syncCatalog.consulWriteInterval; the chart leaves it at 30 s, which kept a deleted api-v1 in
# api.service.consul for up to ~38 s while callers under transparent proxy could not fall back.
CATALOG_WRITE_INTERVAL_S = 5
# The `cache` of CoreDNS's consul:53 server block: answers for .consul are kept at most this long.
CONSUL_ZONE_CACHE_S = 5
# Slack for the endpoint informer, Consul's raft write and the caller's in-flight request.
MARGIN_S = 3
# fake-service exits at once on SIGTERM; the sidecar needs a moment to finish its last responses.
SHUTDOWN_S = 5


def catalog_removal_bound(write_interval_s: float = CATALOG_WRITE_INTERVAL_S) -> float:
    """Worst case from a pod's endpoint leaving until catalog sync has written that to Consul."""
    return write_interval_s / 4 + write_interval_s


def pre_stop_seconds(
    write_interval_s: float = CATALOG_WRITE_INTERVAL_S, dns_cache_s: float = CONSUL_ZONE_CACHE_S
) -> int:
    """The app keeps serving this long after its pod starts terminating."""
    return math.ceil(catalog_removal_bound(write_interval_s) + dns_cache_s + MARGIN_S)


PRE_STOP_S = pre_stop_seconds()
TERMINATION_GRACE_S = PRE_STOP_S + SHUTDOWN_S

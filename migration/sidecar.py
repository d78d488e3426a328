"""What a meshed pod's sidecar takes: ports an application container of that pod must leave free.

consul-k8s v2.0.3 with one service per pod (`control-plane/connect-inject/constants/constants.go`,
`webhook/consul_dataplane_sidecar.go`, `webhook/mesh_webhook.go`, the iptables rules of
`webhook/redirect_traffic.go`, the chart's `connectInject.metrics` ports) and consul-dataplane
release/2.0.x (`pkg/consuldp/metrics.go`: the merged metrics on 20100, its own on 20101, both bound on
every address while the chart's metrics are on, as the program's are).
"""

from __future__ import annotations

SIDECAR_PORTS = {
    8600: "consul-dataplane's DNS proxy",
    15001: "the transparent proxy's outbound listener",
    19000: "Envoy's admin listener",
    20000: "the sidecar's inbound listener",
    20100: "consul-dataplane's merged metrics",
    20101: "consul-dataplane's own metrics",
    20200: "Envoy's Prometheus listener",
    20300: "the liveness probe Envoy exposes",
    20400: "the readiness probe Envoy exposes",
    20500: "the startup probe Envoy exposes",
    20600: "consul-dataplane's graceful-shutdown listener",
    21000: "the sidecar's health check listener",
}

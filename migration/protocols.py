"""What a service's protocol decides: how its sidecars treat its traffic and what later steps may use.

    protocol   ServiceDefaults   intentions   gateway route   L7 (routes, splits, path permissions)
    http       http              L4 allow     yes             yes
    http2      http2             L4 allow     yes             yes
    grpc       grpc              L4 allow     no              yes
    tcp        tcp               L4 allow     no              no

Consul accepts exactly these four (consul-k8s v2.0.3 `api/v1alpha1/servicedefaults_types.go`,
`(*ServiceDefaults).Validate`: `validProtocols := []string{"tcp", "http", "http2", "grpc"}`). The
fleet's intentions carry sources with `action: allow` and no `permissions`, which Consul enforces at
L4 for every protocol; permissions on paths or headers need an HTTP-family protocol. The API gateway
reaches a service through its HTTP listener and an HTTPRoute (consul-k8s `api-gateway/binding/
route_binding.go`, `routeAllowedByProtocol`), which speaks HTTP to the backend: a gRPC or TCP
service cannot be the gateway's. What each protocol's sidecar counts for a caller is `stats`.
"""

from __future__ import annotations

from typing import Literal

Protocol = Literal["http", "http2", "grpc", "tcp"]
PROTOCOLS: tuple[Protocol, ...] = ("http", "http2", "grpc", "tcp")
GATEWAY_PROTOCOLS: tuple[Protocol, ...] = ("http", "http2")


def l7(protocol: Protocol) -> bool:
    """The HTTP family: Envoy parses requests, so routes, splits, retries and L7 intentions apply."""
    return protocol != "tcp"


def counts_requests(protocol: Protocol) -> bool:
    """Whether a caller's sidecar counts requests and their status codes for this upstream (the HTTP
    connection manager's `upstream_rq_*`), or only connections (`upstream_cx_*`, a TCP proxy)."""
    return l7(protocol)

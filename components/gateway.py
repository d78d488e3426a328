"""The Consul API gateway: one load-balanced entry point routing to the exposed service (`web`).

Objects: the service namespaces (the gateway admits routes only from these), a `Gateway`
`api-gateway` in `consul`, an `HTTPRoute` and its `RouteTimeoutFilter` in the exposed service's
namespace, and the `ServiceIntentions` that let `api-gateway` reach that service. The gateway
controller (in the Consul release) turns the Gateway into a Deployment and a LoadBalancer Service
named `api-gateway`, copying the load balancer annotations onto that Service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .annotations import GATEWAY_COMPONENT, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL, LB_SOURCE_RANGES, WAIT_FOR
from .consul import Consul, lb_address
from .consul_values import Scheme, nlb_annotations
from .crds import custom_resource
from .crds import gateway_api as gw
from .crds.consul import IntentionDestination, IntentionSource, RouteTimeoutFilter, ServiceIntentions
from .target import ClusterTarget, Platform

GATEWAY_NAME = "api-gateway"  # also the Consul service name the intentions allow, and the Service's name
GATEWAY_CLASS = "consul"  # the class the chart installs
LISTENER = "http"
# Generous for a demo request that fans out to one upstream; idle connections are closed after a minute.
REQUEST_TIMEOUT = "30s"
IDLE_TIMEOUT = "60s"


@dataclass
class ApiGatewayArgs:
    target: ClusterTarget
    consul: Consul
    scheme: Scheme
    allowed_cidrs: list[str]
    service: str  # the exposed service: its Service name, port and namespace
    service_port: int
    service_namespace: str
    route_namespaces: list[str]  # namespaces whose routes the gateway admits: every service's
    # Of those, the namespaces that exist already (an adopted service's): admitted, never created.
    existing_namespaces: Sequence[str] = ()


def gateway_annotations(platform: Platform, scheme: Scheme, allowed_cidrs: list[str]) -> dict[str, str]:
    """What the gateway controller copies to the gateway's Service (see GATEWAY_COPIED_ANNOTATIONS).

    The Service is created by the controller, so its spec.loadBalancerSourceRanges cannot be set;
    the AWS Load Balancer Controller reads the same allow-list from this annotation.
    """
    annotations = nlb_annotations(scheme) if platform == "eks" else {}
    return {**annotations, LB_SOURCE_RANGES: ",".join(allowed_cidrs)}


def wait_for(platform: Platform) -> str:
    """pulumi.com/waitFor: the Gateway counts as created once Consul has programmed it and, on eks,
    its NLB has an address, so the Service read right after it reports the hostname."""
    conditions = ["condition=Programmed"]
    if platform == "eks":
        conditions.append("jsonpath={.status.addresses[0].value}")
    return json.dumps(conditions) if len(conditions) > 1 else conditions[0]


def gateway_spec(route_namespaces: list[str]) -> gw.Gateway:
    # Selector rather than All: only the service namespaces may attach routes to this public entry point.
    selector = gw.LabelSelector(
        match_expressions=[
            gw.LabelSelectorRequirement(
                key="kubernetes.io/metadata.name", operator="In", values=sorted(set(route_namespaces))
            )
        ]
    )
    listener = gw.Listener(
        name=LISTENER,
        port=80,
        protocol="HTTP",
        allowed_routes=gw.AllowedRoutes(namespaces=gw.RouteNamespaces(from_="Selector", selector=selector)),
    )
    return gw.Gateway(gateway_class_name=GATEWAY_CLASS, listeners=[listener])


def route_spec(service: str, port: int, gateway_namespace: str, timeout_filter: str) -> gw.HTTPRoute:
    # `/` and `/ui` (fake-service's UI), as the seed routed them, both to the service.
    return gw.HTTPRoute(
        parent_refs=[gw.ParentReference(name=GATEWAY_NAME, namespace=gateway_namespace, section_name=LISTENER)],
        rules=[
            gw.RouteRule(
                matches=[
                    gw.RouteMatch(path=gw.PathMatch(type="PathPrefix", value="/")),
                    gw.RouteMatch(path=gw.PathMatch(type="PathPrefix", value="/ui")),
                ],
                filters=[
                    gw.RouteFilter(
                        type="ExtensionRef",
                        extension_ref=gw.LocalObjectReference(
                            group="consul.hashicorp.com", kind=RouteTimeoutFilter.KIND, name=timeout_filter
                        ),
                    )
                ],
                backend_refs=[gw.BackendRef(name=service, port=port)],
            )
        ],
    )


class ApiGateway(pulumi.ComponentResource):
    """The gateway, its route to the exposed service, and the intentions that let traffic through.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    namespaces: dict[str, k8s.core.v1.Namespace]  # the service namespaces; demo services go into these
    gateway: k8s.apiextensions.CustomResource
    route: k8s.apiextensions.CustomResource
    objects: list[k8s.apiextensions.CustomResource]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ApiGatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:gateway:ApiGateway", name, None, opts)
        self._name, self._args = name, args
        # The chart installs the CRDs and the controllers acting on them.
        self._after_consul: list[pulumi.Resource] = list(args.consul.ready)
        self.namespaces = self._namespaces()
        self.gateway = self._gateway()
        self._budget()
        timeout, self.route = self._route()
        intentions = self._intentions()
        self.url = self._url()
        # What a request through the gateway needs in place: the postcheck waits for these.
        self.objects = [self.gateway, timeout, self.route, intentions]
        self.register_outputs({"url": self.url})

    def _namespaces(self) -> dict[str, k8s.core.v1.Namespace]:
        args = self._args
        return {
            ns: k8s.core.v1.Namespace(
                f"{self._name}-namespace-{ns}", metadata={"name": ns}, opts=pulumi.ResourceOptions(parent=self)
            )
            for ns in sorted(set(args.route_namespaces) | {args.service_namespace})
            if ns not in args.existing_namespaces
        }

    def _namespace_of_service(self) -> list[pulumi.Resource]:
        """The exposed service's namespace, when the program creates it (a demo service's)."""
        ns = self.namespaces.get(self._args.service_namespace)
        return [ns] if ns is not None else []

    def _service_namespace_name(self) -> pulumi.Input[str]:
        ns = self.namespaces.get(self._args.service_namespace)
        return ns.metadata["name"] if ns is not None else self._args.service_namespace

    def _gateway(self) -> k8s.apiextensions.CustomResource:
        """The Gateway in Consul's namespace: Consul's controller makes its Deployment and Service."""
        args = self._args
        return custom_resource(
            f"{self._name}-gateway",
            gateway_spec(args.route_namespaces),
            name=GATEWAY_NAME,
            namespace=args.consul.namespace,
            annotations={
                **gateway_annotations(args.target.platform, args.scheme, args.allowed_cidrs),
                WAIT_FOR: wait_for(args.target.platform),
            },
            parent=self,
            depends_on=self._after_consul,
        )

    def _budget(self) -> k8s.policy.v1.PodDisruptionBudget:
        """One of the gateway's pods (GATEWAY_REPLICAS, the class's instances) may be evicted at a time.

        The controller makes the pods, with a preferred anti-affinity by node, and no budget
        (api-gateway/gatekeeper); a drain could otherwise take both at once.
        """
        consul_ns = self._args.consul.namespace
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-budget",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATEWAY_NAME, namespace=consul_ns),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={
                        GATEWAY_COMPONENT: "api-gateway",
                        GATEWAY_NAME_LABEL: GATEWAY_NAME,
                        GATEWAY_NAMESPACE_LABEL: consul_ns,
                    }
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gateway]),
        )

    def _route(self) -> tuple[k8s.apiextensions.CustomResource, k8s.apiextensions.CustomResource]:
        """The HTTPRoute to the exposed service, and the timeout filter it references (created first)."""
        args = self._args
        timeout = custom_resource(
            f"{self._name}-timeout",
            RouteTimeoutFilter(request_timeout=REQUEST_TIMEOUT, idle_timeout=IDLE_TIMEOUT),
            name=f"{args.service}-timeout",
            namespace=args.service_namespace,
            parent=self,
            depends_on=[*self._after_consul, *self._namespace_of_service()],
        )
        route = custom_resource(
            f"{self._name}-route",
            route_spec(args.service, args.service_port, args.consul.namespace, f"{args.service}-timeout"),
            name=args.service,
            namespace=self._service_namespace_name(),
            parent=self,
            depends_on=[*self._after_consul, timeout],  # the filter it references exists first
        )
        return timeout, route

    def _intentions(self) -> k8s.apiextensions.CustomResource:
        """`api-gateway` may call the exposed service."""
        args = self._args
        return custom_resource(
            f"{self._name}-intentions",
            ServiceIntentions(
                destination=IntentionDestination(name=args.service),
                sources=[
                    IntentionSource(
                        name=GATEWAY_NAME, action="allow", description="The API gateway forwards outside requests"
                    )
                ],
            ),
            name=args.service,
            namespace=args.service_namespace,
            parent=self,
            depends_on=[*self._after_consul, *self._namespace_of_service()],
        )

    def _url(self) -> pulumi.Output[str]:
        """The gateway's address, read from the controller's Service for this Gateway. The id waits for
        the Gateway, so a preview that creates the Gateway does not read a Service that does not exist yet."""
        namespace = self._args.consul.namespace
        service = k8s.core.v1.Service.get(
            f"{self._name}-service",
            self.gateway.id.apply(lambda _: f"{namespace}/{GATEWAY_NAME}"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gateway]),
        )
        forward = f"kubectl -n {namespace} port-forward svc/{GATEWAY_NAME} 8080:80"
        return service.status.apply(
            lambda st: f"http://{addr}" if (addr := lb_address(st)) else f"http://localhost:8080 after: {forward}"
        )

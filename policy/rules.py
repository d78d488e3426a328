"""The migration's invariants as plain functions over resource types and properties.

No Pulumi import: `policy/__main__.py` wraps these in a CrossGuard PolicyPack, and the tests call
them directly on hand-made properties and on the resources of a mock run of the real program.
Properties may be plain dicts or CrossGuard's read-only proxies, so only the `Mapping` and
`Sequence` protocols are used.

Resource rules take `(resource_type, props)` and return violation messages; stack rules take every
resource of the stack and return `Violation`s that name the offending resource's URN.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
SERVICE_TYPE = "kubernetes:core/v1:Service"
CONSUL_GROUP = "consul.hashicorp.com"
GATEWAY_GROUP = "gateway.networking.k8s.io"

# Annotations read by the AWS Load Balancer Controller and the in-tree cloud provider.
LB_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
LB_INTERNAL_LEGACY = "service.beta.kubernetes.io/aws-load-balancer-internal"
LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"
LB_TYPE = "service.beta.kubernetes.io/aws-load-balancer-type"
LB_TARGET_TYPE = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"
LB_CONTROLLER_CHART = "aws-load-balancer-controller"
CONSUL_CHART = "consul"
# A stack on EKS: pulumi-eks's component, or the cluster it creates.
EKS_CLUSTER_TYPES = ("eks:index:Cluster", "aws:eks/cluster:Cluster")

# Action wildcards that the AWS Load Balancer Controller's official IAM policy grants
# (docs/install/iam_policy.json, v3.5.0): none. It names every action, with no `*` and no
# `<service>:*`, so no policy in this stack needs one. Operators can extend the set through the
# policy's `allowedWildcardActions` config.
LB_CONTROLLER_WILDCARD_ACTIONS: frozenset[str] = frozenset()

IAM_POLICY_TYPES = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
IAM_ROLE_TYPE = "aws:iam/role:Role"


class StackResource(Protocol):
    """What a stack rule reads of a resource; CrossGuard's PolicyResource has these attributes."""

    @property
    def resource_type(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    @property
    def urn(self) -> str: ...


@dataclass(frozen=True)
class Resource:
    """A resource outside CrossGuard (tests, mock runs). Like CrossGuard's PolicyResource, what it
    waits for: its dependencies (property ones too), its parent and its provider, by URN here."""

    resource_type: str
    props: Mapping[str, Any] = field(default_factory=dict)
    urn: str = ""
    dependencies: Sequence[Any] = ()
    property_dependencies: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    parent: Any = None
    provider: Any = None


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str | None = None


# --- reading properties ---------------------------------------------------------------------------


def _get(props: Any, path: str, default: Any = None) -> Any:
    """props["a"]["b"]["c"] for path "a.b.c", or `default` when any step is missing."""
    value = props
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    """A string or a list of strings as a list; anything else as an empty list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [v for v in value if isinstance(v, str)]
    return []


def _yaml_text(value: Any) -> Any:
    """Chart values that the Consul chart takes as YAML inside a string (annotations, additionalSpec)."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return None
    return value


def _kind(resource_type: str) -> tuple[str, str]:
    """("consul.hashicorp.com", "Mesh") for "kubernetes:consul.hashicorp.com/v1alpha1:Mesh"."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return "", ""
    return parts[1].rsplit("/", 1)[0], parts[2]


def chart_name(resource_type: str, props: Mapping[str, Any]) -> str:
    """The chart of a Helm release or chart resource ("consul" for "hashicorp/consul"); "" for others."""
    chart = props.get("chart") if resource_type in HELM_TYPES else None
    return chart.rstrip("/").rsplit("/", 1)[-1] if isinstance(chart, str) else ""


def _is_consul_chart(resource_type: str, props: Mapping[str, Any]) -> bool:
    return chart_name(resource_type, props) == "consul"


# --- Consul: TLS and ACLs -------------------------------------------------------------------------


def consul_tls_and_acls(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A Consul Helm release keeps TLS (with verification) and ACLs on; the chart's defaults are off."""
    if not _is_consul_chart(resource_type, props):
        return []
    values = props.get("values") or {}
    problems = []
    if _get(values, "global.tls.enabled") is not True:
        problems.append("Consul values must set global.tls.enabled: true (the chart default is off)")
    if _get(values, "global.tls.verify", True) is not True:
        problems.append("Consul values must not turn off global.tls.verify")
    if _get(values, "global.acls.manageSystemACLs") is not True:
        problems.append("Consul values must set global.acls.manageSystemACLs: true (the chart default is off)")
    return problems


# --- Load balancers: an allow-list on everything internet-facing ---------------------------------


@dataclass(frozen=True)
class _LoadBalancer:
    what: str
    annotations: Mapping[str, Any]
    source_ranges: list[str]
    open_allowed: bool  # the API gateway: its allow-list is config (gateway.allowedCidrs), 0.0.0.0/0 included
    via_gateway: bool = False  # a Gateway: its Service gets only the annotations the gateway class copies
    load_balancer_class: Any = None  # spec.loadBalancerClass, when the object sets it


def _is_internal(annotations: Mapping[str, Any]) -> bool:
    scheme = annotations.get(LB_SCHEME)
    legacy = annotations.get(LB_INTERNAL_LEGACY)
    return scheme == "internal" or (scheme is None and legacy in ("true", True))


def _ranges(annotations: Mapping[str, Any], spec_ranges: Any) -> list[str]:
    ranges = _strings(spec_ranges)
    annotated = annotations.get(LB_SOURCE_RANGES)
    if isinstance(annotated, str):
        ranges += [r.strip() for r in annotated.split(",") if r.strip()]
    return ranges


def _is_open(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _load_balancers(resource_type: str, props: Mapping[str, Any]) -> list[_LoadBalancer]:
    group, kind = _kind(resource_type)
    if resource_type == SERVICE_TYPE and _get(props, "spec.type") == "LoadBalancer":
        annotations = _get(props, "metadata.annotations") or {}
        name = _get(props, "metadata.name", "")
        ranges = _ranges(annotations, _get(props, "spec.loadBalancerSourceRanges"))
        lb_class = _get(props, "spec.loadBalancerClass")
        return [_LoadBalancer(f"Service {name}", annotations, ranges, open_allowed=False, load_balancer_class=lb_class)]
    if group == GATEWAY_GROUP and kind == "Gateway":
        # The gateway controller creates the LoadBalancer Service and copies these annotations to it.
        annotations = _get(props, "metadata.annotations") or {}
        name = _get(props, "metadata.name", "")
        ranges = _ranges(annotations, None)
        return [_LoadBalancer(f"Gateway {name}", annotations, ranges, open_allowed=True, via_gateway=True)]
    if _is_consul_chart(resource_type, props):
        values = props.get("values") or {}
        found = []
        ui_on = _get(values, "ui.enabled", True) is not False and _get(values, "ui.service.enabled", True) is not False
        mesh_on = _get(values, "meshGateway.enabled") is True
        # The chart's UI Service is ClusterIP by default; its mesh gateway Service a LoadBalancer.
        for path, on, default_type in (("ui.service", ui_on, None), ("meshGateway.service", mesh_on, "LoadBalancer")):
            if on and _get(values, f"{path}.type", default_type) == "LoadBalancer":
                annotations = _yaml_text(_get(values, f"{path}.annotations"))
                annotations = annotations if isinstance(annotations, Mapping) else {}
                spec = _yaml_text(_get(values, f"{path}.additionalSpec"))
                ranges = _ranges(annotations, _get(spec, "loadBalancerSourceRanges"))
                lb_class = _get(spec, "loadBalancerClass")
                found.append(
                    _LoadBalancer(
                        f"Consul values {path}", annotations, ranges, open_allowed=False, load_balancer_class=lb_class
                    )
                )
        return found
    return []


def creates_load_balancer(resource_type: str, props: Mapping[str, Any]) -> bool:
    """True when the object makes a controller create a cloud load balancer (internal or not)."""
    return bool(_load_balancers(resource_type, props))


def load_balancers(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The cloud load balancers the object makes a controller create: (what, internet-facing)."""
    return [(lb.what, not _is_internal(lb.annotations)) for lb in _load_balancers(resource_type, props)]


def load_balancers_have_allow_lists(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No internet-facing load balancer without a source-range allow-list.

    A LoadBalancer Service, a Gateway (its Service is a LoadBalancer) or a Consul chart Service is
    internet-facing unless its scheme annotation says internal. It needs loadBalancerSourceRanges or
    the source-ranges annotation, and an allow-list open to everyone (0.0.0.0/0) only counts on the
    API gateway, where it is what `gateway.allowedCidrs` asks for.
    """
    problems = []
    for lb in _load_balancers(resource_type, props):
        if _is_internal(lb.annotations):
            continue
        if not lb.source_ranges:
            problems.append(
                f"{lb.what} is an internet-facing load balancer with no allow-list: set the {LB_SCHEME} "
                f"annotation to internal, or list source CIDRs (loadBalancerSourceRanges or {LB_SOURCE_RANGES})"
            )
        elif not lb.open_allowed and any(_is_open(r) for r in lb.source_ranges):
            problems.append(f"{lb.what} is open to the whole internet ({', '.join(lb.source_ranges)}); list your CIDRs")
    return problems


def _copied_annotations(resources: Iterable[StackResource]) -> set[str]:
    """The annotation keys the gateway controller copies from a Gateway to its Service (Consul:
    apiGateway.managedGatewayClass.copyAnnotations, or a GatewayClassConfig's spec.copyAnnotations)."""
    copied: set[str] = set()
    for r in resources:
        if _is_consul_chart(r.resource_type, r.props):
            path = "values.connectInject.apiGateway.managedGatewayClass.copyAnnotations.service.annotations"
            copied.update(_strings(_yaml_text(_get(r.props, path))))
        elif _kind(r.resource_type) == (CONSUL_GROUP, "GatewayClassConfig"):
            copied.update(_strings(_get(r.props, "spec.copyAnnotations.service")))
    return copied


def gateway_annotations_reach_the_load_balancer(resources: Iterable[StackResource]) -> list[Violation]:
    """A Gateway's scheme and allow-list annotations only matter if the gateway controller copies them
    to the Service it creates (Consul: apiGateway.managedGatewayClass.copyAnnotations, or a
    GatewayClassConfig's spec.copyAnnotations). A Gateway whose allow-list is not copied has none.
    """
    resources = list(resources)
    copied = _copied_annotations(resources)
    gateways = [r for r in resources if _kind(r.resource_type) == (GATEWAY_GROUP, "Gateway")]
    out = []
    for gw in gateways:
        annotations = _get(gw.props, "metadata.annotations") or {}
        missing = sorted(k for k in (LB_SCHEME, LB_SOURCE_RANGES) if k in annotations and k not in copied)
        if missing:
            name = _get(gw.props, "metadata.name", "")
            out.append(
                Violation(
                    f"Gateway {name}: the gateway controller does not copy {', '.join(missing)} to its "
                    "load balancer Service; add them to the gateway class's copyAnnotations",
                    gw.urn,
                )
            )
    return out


# --- Load balancers: claimed by the AWS Load Balancer Controller without a class ------------------


def _claimed_by_annotations(annotations: Mapping[str, Any]) -> bool:
    """aws-load-balancer-controller v3.5.0 pkg/service/service_utils.go checkAWSLoadBalancerTypeAnnotation."""
    lb_type = annotations.get(LB_TYPE)
    return lb_type == "nlb-ip" or (lb_type == "external" and annotations.get(LB_TARGET_TYPE) in ("ip", "instance"))


def _on_eks(resources: Sequence[StackResource]) -> bool:
    return any(
        r.resource_type in EKS_CLUSTER_TYPES or chart_name(r.resource_type, r.props) == LB_CONTROLLER_CHART
        for r in resources
    )


def load_balancers_claimed_by_annotations(resources: Iterable[StackResource]) -> list[Violation]:
    """On EKS every LoadBalancer Service the stack causes names the AWS Load Balancer Controller in its annotations.

    The controller's Service mutator is off (it would give each new Service a loadBalancerClass that
    Consul's gateway controller then cannot rewrite), so a Service without a class is the
    controller's only with `aws-load-balancer-type: external` and `aws-load-balancer-nlb-target-type:
    ip` or `instance` (or the legacy type `nlb-ip`); otherwise it gets no NLB and stays pending. That
    holds for Services, for the Service the gateway controller makes from a Gateway (only the
    annotations its class copies reach it), and for the Consul chart's UI and mesh gateway Services.
    The controller release itself must keep the mutator off.
    """
    resources = list(resources)
    if not _on_eks(resources):
        return []
    copied = _copied_annotations(resources)
    wanted = f"{LB_TYPE}: external and {LB_TARGET_TYPE}: ip (or instance)"
    out = []
    for r in resources:
        is_controller = chart_name(r.resource_type, r.props) == LB_CONTROLLER_CHART
        if is_controller and _get(r.props, "values.enableServiceMutatorWebhook", True) is not False:
            out.append(
                Violation(
                    "AWS Load Balancer Controller values must set enableServiceMutatorWebhook: false (the "
                    "chart default is on): the loadBalancerClass it sets on create makes every later rewrite "
                    "of the Service's spec by Consul's gateway controller fail, so the Gateway is never "
                    "Programmed",
                    r.urn,
                )
            )
        for lb in _load_balancers(r.resource_type, r.props):
            if lb.load_balancer_class is not None:  # the controller's class, or another implementation's Service
                continue
            if lb.via_gateway:
                reaching = {k: v for k, v in lb.annotations.items() if k in copied}
                if not _claimed_by_annotations(reaching):
                    out.append(
                        Violation(
                            f"{lb.what}: its Service gets no NLB on EKS; the Gateway must carry {wanted} and the "
                            "gateway class must copy both (copyAnnotations)",
                            r.urn,
                        )
                    )
            elif not _claimed_by_annotations(lb.annotations):
                out.append(Violation(f"{lb.what}: gets no NLB on EKS without the annotations {wanted}", r.urn))
    return out


# --- Mesh: no permissive mTLS once the mesh forbids it ---------------------------------------------


def no_permissive_mtls_when_mesh_forbids(resources: Iterable[StackResource]) -> list[Violation]:
    """Once the Mesh sets allowEnablingPermissiveMutualTLS false (the hardened phase), no
    ServiceDefaults or ProxyDefaults may ask for mutualTLSMode permissive: Consul would refuse it, and
    it would reopen plain-text access to a meshed service.
    """
    resources = list(resources)
    forbidding = [
        r
        for r in resources
        if _kind(r.resource_type) == (CONSUL_GROUP, "Mesh")
        and _get(r.props, "spec.allowEnablingPermissiveMutualTLS") is False
    ]
    if not forbidding:
        return []
    out = []
    for r in resources:
        group, kind = _kind(r.resource_type)
        permissive = _get(r.props, "spec.mutualTLSMode") == "permissive"
        if permissive and group == CONSUL_GROUP and kind in ("ServiceDefaults", "ProxyDefaults"):
            name = _get(r.props, "metadata.name", "")
            out.append(
                Violation(
                    f"{kind} {name} sets mutualTLSMode permissive while the Mesh forbids it "
                    "(allowEnablingPermissiveMutualTLS false)",
                    r.urn,
                )
            )
    return out


# --- IAM: no action wildcards beyond the load balancer controller's -------------------------------


def _documents(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if resource_type in IAM_POLICY_TYPES:
        return [("policy", props.get("policy"))]
    if resource_type == IAM_ROLE_TYPE:
        inline = props.get("inlinePolicies") or []
        if isinstance(inline, Sequence) and not isinstance(inline, str):
            return [(f"inline policy {_get(p, 'name', i)}", _get(p, "policy")) for i, p in enumerate(inline)]
    return []


def _statements(document: Any) -> list[Any]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    statements = _get(document, "Statement", [])
    if isinstance(statements, Mapping):
        return [statements]
    return list(statements) if isinstance(statements, Sequence) and not isinstance(statements, str) else []


def iam_action_wildcards(
    resource_type: str, props: Mapping[str, Any], allowed: frozenset[str] = LB_CONTROLLER_WILDCARD_ACTIONS
) -> list[str]:
    """No Allow statement grants `*`, `<service>:*` or any other action wildcard not in `allowed`,
    and none grants everything but a list (NotAction)."""
    problems = []
    for where, document in _documents(resource_type, props):
        for i, statement in enumerate(_statements(document)):
            if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
                continue
            sid = statement.get("Sid") or f"statement {i}"
            wild = sorted(a for a in _strings(statement.get("Action")) if "*" in a and a not in allowed)
            if wild:
                problems.append(f"{where}, {sid}: Allow with action wildcard {', '.join(wild)}; name the actions")
            if "NotAction" in statement:
                problems.append(f"{where}, {sid}: Allow with NotAction grants every other action; name the actions")
    return problems


# --- AWS and EKS posture ---------------------------------------------------------------------------

EKS_COMPONENT = "eks:index:Cluster"  # pulumi-eks; its child aws:eks/cluster:Cluster is checked as well
EKS_CLUSTER = "aws:eks/cluster:Cluster"
# The control-plane log the security defaults promise whatever else `cluster.logTypes` chooses: the
# audit log, who did what in the cluster (program/config.py refuses a config without it first).
REQUIRED_LOG_TYPES = ("audit",)
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
NODE_GROUP_TYPES = ("eks:index:ManagedNodeGroup", "aws:eks/nodeGroup:NodeGroup")
# AWS-managed policies that grant (or can grant themselves) every action.
ADMIN_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess")
POLICY_ARN_TYPES = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)


def eks_secrets_encrypted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """An EKS cluster envelope-encrypts Kubernetes Secrets with a KMS key."""
    if resource_type == EKS_COMPONENT and not props.get("encryptionConfigKeyArn"):
        return ["EKS cluster without encryptionConfigKeyArn: Kubernetes Secrets are not envelope-encrypted with KMS"]
    if resource_type == EKS_CLUSTER:
        config = props.get("encryptionConfig") or {}
        resources = _strings(_get(config, "resources"))
        if "secrets" not in resources or not _get(config, "provider.keyArn"):
            return ["EKS cluster without encryptionConfig for secrets: Kubernetes Secrets are not encrypted with KMS"]
    return []


def eks_control_plane_logs(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """An EKS cluster sends its audit log (who did what in the cluster) to CloudWatch."""
    if resource_type not in (EKS_COMPONENT, EKS_CLUSTER):
        return []
    missing = [t for t in REQUIRED_LOG_TYPES if t not in _strings(props.get("enabledClusterLogTypes"))]
    if missing:
        return [f"EKS cluster without the control-plane logs {', '.join(missing)} (enabledClusterLogTypes)"]
    return []


def _hop_limit(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def imds_v2_hop_limit_one(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Nodes require IMDSv2 tokens with a hop limit of 1, so pods cannot take the node role's credentials.

    The token's response does not survive the extra hop into a pod's network namespace. A managed
    node group without a launch template gets EKS's default one, which allows two hops.
    """
    if resource_type in NODE_GROUP_TYPES:
        if not props.get("launchTemplate"):
            return ["node group without a launch template: EKS's default allows IMDS with two hops (pods)"]
        return []
    if resource_type not in (LAUNCH_TEMPLATE, INSTANCE):
        return []
    options = props.get("metadataOptions") or {}
    if _get(options, "httpEndpoint") == "disabled":
        return []  # no metadata service at all
    problems = []
    if _get(options, "httpTokens") != "required":
        problems.append("metadataOptions.httpTokens must be required (IMDSv2 only)")
    if _hop_limit(_get(options, "httpPutResponseHopLimit")) != 1:
        problems.append("metadataOptions.httpPutResponseHopLimit must be 1, so pods cannot reach the node's IMDS")
    return problems


def _admin_policy(arn: Any) -> str | None:
    if not isinstance(arn, str) or ":iam::aws:policy/" not in arn:
        return None  # a customer-managed policy is held to named actions by iam_action_wildcards
    name = arn.rsplit("/", 1)[-1]
    return name if name in ADMIN_POLICIES else None


def no_admin_policies(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No AWS-managed administrator policy (AdministratorAccess, PowerUserAccess, IAMFullAccess) is attached."""
    if resource_type in POLICY_ARN_TYPES:
        arns = [props.get("policyArn")]
    elif resource_type == IAM_ROLE_TYPE:
        arns = list(_strings(props.get("managedPolicyArns")))
    elif resource_type == "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive":
        arns = list(_strings(props.get("policyArns")))
    else:
        return []
    admin = sorted({name for arn in arns if (name := _admin_policy(arn))})
    return [f"attaches {name}: grant the actions the role needs instead" for name in admin]


def consul_ui_private(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The Consul UI is reached through its ClusterIP (or a load balancer with an allow-list), never an
    Ingress or a NodePort on every node: it shows every service and, with a token, changes them."""
    if not _is_consul_chart(resource_type, props):
        return []
    values = props.get("values") or {}
    if _get(values, "ui.enabled", True) is False:
        return []
    problems = []
    if _get(values, "ui.ingress.enabled") is True:
        problems.append("Consul values ui.ingress.enabled: the UI goes behind an Ingress; use consul.ui.exposure")
    if _get(values, "ui.service.enabled", True) is not False and _get(values, "ui.service.type") == "NodePort":
        problems.append("Consul values ui.service.type NodePort opens the UI on every node; use consul.ui.exposure")
    return problems


# --- teardown: what makes a load balancer goes before the controller that releases it ---------------

NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"


@dataclass(frozen=True)
class Node:
    """A resource as the teardown rule reads it."""

    urn: str
    resource_type: str
    props: Mapping[str, Any]
    waits_for: tuple[str, ...]  # URNs `pulumi destroy` deletes after it: dependencies, parent, provider


def state_nodes(resources: Iterable[Mapping[str, Any]]) -> list[Node]:
    """Entries of `pulumi stack export` (urn, type, inputs, dependencies, propertyDependencies, parent,
    provider) as Nodes."""
    out = []
    for r in resources:
        edges = [*(r.get("dependencies") or [])]
        edges += [u for us in (r.get("propertyDependencies") or {}).values() for u in us]
        # A provider reference is "<urn>::<id>".
        edges += [r.get("parent") or "", (r.get("provider") or "").rsplit("::", 1)[0]]
        out.append(Node(r["urn"], r.get("type", ""), r.get("inputs") or {}, tuple(u for u in edges if u)))
    return out


def _urn(ref: Any) -> str:
    return ref if isinstance(ref, str) else getattr(ref, "urn", "") or ""


def policy_nodes(resources: Iterable[Any]) -> list[Node]:
    """CrossGuard's resources (PolicyResource: dependencies, property_dependencies, parent and provider
    are resources), or `Resource`s, as Nodes."""
    out = []
    for r in resources:
        related = [*r.dependencies, *(d for ds in r.property_dependencies.values() for d in ds), r.parent, r.provider]
        out.append(Node(r.urn, r.resource_type, r.props, tuple(u for u in map(_urn, related) if u)))
    return out


def teardown_order(nodes: Sequence[Node]) -> list[Violation]:
    """What `pulumi destroy` would delete in an order that orphans a cloud load balancer.

    Destroy deletes a resource before everything it depends on (dependencies, parent, provider).
    Every object that makes a controller create a load balancer (a LoadBalancer Service, a Gateway,
    Consul chart Services) must therefore depend on the AWS Load Balancer Controller, which deletes
    the load balancer when the object goes; and a Gateway on the Consul release, whose gateway
    controller deletes the gateway's Service.
    """
    by_urn = {n.urn: n for n in nodes}

    def waits_for(node: Node) -> set[str]:
        seen: set[str] = set()
        todo = [node.urn]
        while todo:
            current = by_urn.get(todo.pop())
            if current is None:
                continue
            for urn in current.waits_for:
                if urn not in seen:
                    seen.add(urn)
                    todo.append(urn)
        return seen

    def charts(name: str) -> list[Node]:
        return [n for n in nodes if chart_name(n.resource_type, n.props) == name]

    controllers, consul = charts(LB_CONTROLLER_CHART), charts(CONSUL_CHART)
    problems = []
    for n in nodes:
        typ, inputs = n.resource_type, n.props
        if not creates_load_balancer(typ, inputs):
            continue
        label = f"{typ.rsplit(':', 1)[-1]} {(inputs.get('metadata') or {}).get('name') or n.urn.rsplit('::', 1)[-1]}"
        deps = waits_for(n)
        if any(c.urn not in deps for c in controllers):
            problems.append(
                Violation(f"{label} does not depend on the load balancer controller, which may go first", n.urn)
            )
        if typ.endswith(":Gateway") and any(c.urn not in deps for c in consul):
            problems.append(
                Violation(f"{label} does not depend on the Consul release, whose controller removes its Service", n.urn)
            )
        # The gateway's Service lives in the Gateway's namespace, outside the graph; deleting the
        # namespace waits for that Service's finalizer, which only the controller runs.
        if typ.endswith(":Gateway"):
            namespace = (inputs.get("metadata") or {}).get("namespace")
            for ns in nodes:
                ns_name = (ns.props.get("metadata") or {}).get("name")
                unsafe = any(c.urn not in waits_for(ns) for c in controllers)
                if ns.resource_type == NAMESPACE_TYPE and ns_name == namespace and unsafe:
                    problems.append(
                        Violation(
                            f"Namespace {namespace} (of {label}) does not depend on the load balancer controller, "
                            "which may go first",
                            ns.urn,
                        )
                    )
    return problems


def destroy_releases_load_balancers(resources: Iterable[Any]) -> list[Violation]:
    """`pulumi destroy` deletes every object that makes a load balancer before the controller that releases it.

    Otherwise the Service's finalizer never runs, and the NLB, its security groups and ENIs are left
    behind, blocking the subnets and the VPC (teardown_order says which object; `make demo ARGS=destroy`
    checks the same on the stack's state before it destroys anything).
    """
    return teardown_order(policy_nodes(resources))


# --- all of them ------------------------------------------------------------------------------------

RESOURCE_RULES = (
    consul_tls_and_acls,
    load_balancers_have_allow_lists,
    iam_action_wildcards,
    eks_secrets_encrypted,
    eks_control_plane_logs,
    imds_v2_hop_limit_one,
    no_admin_policies,
    consul_ui_private,
)
STACK_RULES = (
    no_permissive_mtls_when_mesh_forbids,
    gateway_annotations_reach_the_load_balancer,
    load_balancers_claimed_by_annotations,
    destroy_releases_load_balancers,
)


def check_stack(resources: Sequence[StackResource]) -> list[Violation]:
    """Every rule over a whole stack, with default policy config: what `pulumi preview --policy-pack` reports."""
    out = [Violation(m, r.urn) for r in resources for rule in RESOURCE_RULES for m in rule(r.resource_type, r.props)]
    for stack_rule in STACK_RULES:
        out.extend(stack_rule(resources))
    return out

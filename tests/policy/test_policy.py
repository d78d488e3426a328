"""The policy pack: the migration's invariants as CrossGuard rules.

The rules are plain functions (policy/rules.py), called here on hand-made properties and on every
resource of the real program evaluated under mocks. The pack module itself starts a server and
blocks when it builds the PolicyPack; one test loads it with PolicyPack replaced by a recorder to
check the wiring.
"""

from __future__ import annotations

import json
import runpy
import sys
from typing import Any

import pulumi_policy
import pytest

from migration.phases import PHASE_NAMES
from policy import rules
from policy.rules import Resource
from tests.conftest import ROOT, as_policy

CONSUL = "kubernetes:helm.sh/v3:Release"
SERVICE = "kubernetes:core/v1:Service"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1beta1:Gateway"
MESH = "kubernetes:consul.hashicorp.com/v1alpha1:Mesh"
SERVICE_DEFAULTS = "kubernetes:consul.hashicorp.com/v1alpha1:ServiceDefaults"
SCHEME = rules.LB_SCHEME
RANGES = rules.LB_SOURCE_RANGES


def consul_release(**values: Any) -> dict[str, Any]:
    secure = {"global": {"tls": {"enabled": True, "verify": True}, "acls": {"manageSystemACLs": True}}}
    return {"chart": "consul", "values": {**secure, **values}}


# --- Consul: TLS and ACLs ---------------------------------------------------------------------------


def test_a_consul_release_with_tls_and_acls_on_passes():
    assert rules.consul_tls_and_acls(CONSUL, consul_release()) == []


@pytest.mark.parametrize(
    ("global_values", "named"),
    [
        ({"tls": {"enabled": False}, "acls": {"manageSystemACLs": True}}, "global.tls.enabled"),
        ({"acls": {"manageSystemACLs": True}}, "global.tls.enabled"),  # left to the chart default: off
        ({"tls": {"enabled": True, "verify": False}, "acls": {"manageSystemACLs": True}}, "global.tls.verify"),
        ({"tls": {"enabled": True}, "acls": {"manageSystemACLs": False}}, "global.acls.manageSystemACLs"),
        ({"tls": {"enabled": True}}, "global.acls.manageSystemACLs"),
    ],
)
def test_tls_and_acls_are_never_off_in_the_consul_values(global_values, named):
    problems = rules.consul_tls_and_acls(CONSUL, {"chart": "consul", "values": {"global": global_values}})
    assert len(problems) == 1
    assert named in problems[0]


def test_other_charts_are_not_held_to_consul_values():
    assert rules.consul_tls_and_acls(CONSUL, {"chart": "aws-load-balancer-controller", "values": {}}) == []
    assert rules.consul_tls_and_acls("kubernetes:helm.sh/v4:Chart", {"chart": "hashicorp/consul", "values": {}})


# --- Load balancers ---------------------------------------------------------------------------------


def lb_service(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ui", "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", **spec},
    }


@pytest.mark.parametrize(
    "props",
    [
        lb_service(),
        lb_service({SCHEME: "internet-facing"}),
        lb_service({SCHEME: "internet-facing"}, loadBalancerSourceRanges=["0.0.0.0/0"]),
        lb_service({RANGES: "10.0.0.0/8, 0.0.0.0/0"}),
    ],
    ids=["no annotations", "internet-facing", "open range list", "open range annotation"],
)
def test_an_internet_facing_service_needs_a_real_allow_list(props):
    problems = rules.load_balancers_have_allow_lists(SERVICE, props)
    assert len(problems) == 1
    assert "Service ui" in problems[0]


@pytest.mark.parametrize(
    "props",
    [
        lb_service({SCHEME: "internal"}),
        lb_service({"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}),
        lb_service({SCHEME: "internet-facing"}, loadBalancerSourceRanges=["203.0.113.0/24"]),
        lb_service({RANGES: "203.0.113.0/24,198.51.100.7/32"}),
        {"metadata": {"name": "ui"}, "spec": {"type": "ClusterIP"}},
    ],
    ids=["internal", "legacy internal", "range list", "range annotation", "not a load balancer"],
)
def test_internal_or_allow_listed_services_pass(props):
    assert rules.load_balancers_have_allow_lists(SERVICE, props) == []


def gateway(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "api-gateway", "namespace": "consul", "annotations": annotations}}


def test_the_api_gateway_may_be_open_when_the_config_asks_for_it_but_never_without_an_allow_list():
    assert (
        rules.load_balancers_have_allow_lists(GATEWAY, gateway({SCHEME: "internet-facing", RANGES: "0.0.0.0/0"})) == []
    )
    assert rules.load_balancers_have_allow_lists(GATEWAY, gateway({SCHEME: "internal"})) == []
    problems = rules.load_balancers_have_allow_lists(GATEWAY, gateway({SCHEME: "internet-facing"}))
    assert len(problems) == 1
    assert "Gateway api-gateway" in problems[0]


def test_load_balancers_in_the_consul_values_need_an_allow_list_too():
    public_ui = {"service": {"type": "LoadBalancer", "annotations": f'"{SCHEME}": "internet-facing"\n'}}
    problems = rules.load_balancers_have_allow_lists(CONSUL, consul_release(ui=public_ui))
    assert len(problems) == 1
    assert "ui.service" in problems[0]

    allow_listed = {**public_ui["service"], "additionalSpec": "loadBalancerSourceRanges:\n- 203.0.113.0/24\n"}
    assert rules.load_balancers_have_allow_lists(CONSUL, consul_release(ui={"service": allow_listed})) == []

    # The chart makes the mesh gateway Service a LoadBalancer unless told otherwise.
    problems = rules.load_balancers_have_allow_lists(CONSUL, consul_release(meshGateway={"enabled": True}))
    assert len(problems) == 1
    assert "meshGateway.service" in problems[0]
    assert rules.load_balancers_have_allow_lists(CONSUL, consul_release(meshGateway={"enabled": False})) == []


def test_a_gateways_allow_list_must_be_copied_to_its_load_balancer_service():
    gw = Resource(GATEWAY, gateway({SCHEME: "internet-facing", RANGES: "0.0.0.0/0"}), urn="urn:gw")
    copied = rules.LB_SCHEME + "\n"  # the source ranges are not copied
    release = consul_release(
        connectInject={"apiGateway": {"managedGatewayClass": {"copyAnnotations": {"service": {"annotations": copied}}}}}
    )
    violations = rules.gateway_annotations_reach_the_load_balancer([Resource(CONSUL, release), gw])
    assert [(v.urn, RANGES in v.message) for v in violations] == [("urn:gw", True)]

    both = f"- {SCHEME}\n- {RANGES}\n"
    release["values"]["connectInject"]["apiGateway"]["managedGatewayClass"]["copyAnnotations"]["service"] = {
        "annotations": both
    }
    assert rules.gateway_annotations_reach_the_load_balancer([Resource(CONSUL, release), gw]) == []
    # A GatewayClassConfig can carry the list instead of the chart values.
    config = Resource(
        "kubernetes:consul.hashicorp.com/v1alpha1:GatewayClassConfig",
        {"spec": {"copyAnnotations": {"service": [SCHEME, RANGES]}}},
    )
    assert rules.gateway_annotations_reach_the_load_balancer([config, gw]) == []


# --- Load balancers on EKS: claimed by annotations, not by a class ------------------------------------

LB_TYPE, LB_TARGET_TYPE = rules.LB_TYPE, rules.LB_TARGET_TYPE
NLB = {LB_TYPE: "external", LB_TARGET_TYPE: "ip"}
LB_CONTROLLER = Resource(
    CONSUL, {"chart": "aws-load-balancer-controller", "values": {"enableServiceMutatorWebhook": False}}, "urn:lbc"
)


def claimed(*resources: Resource) -> list[str]:
    """The rule's messages for these resources in a stack that runs the AWS Load Balancer Controller."""
    return [v.message for v in rules.load_balancers_claimed_by_annotations([LB_CONTROLLER, *resources])]


@pytest.mark.parametrize(
    "props",
    [
        lb_service(NLB),
        lb_service({LB_TYPE: "external", LB_TARGET_TYPE: "instance"}),
        lb_service({LB_TYPE: "nlb-ip"}),
        lb_service(loadBalancerClass="service.k8s.aws/nlb"),
        lb_service(loadBalancerClass="example.com/other"),
        {"metadata": {"name": "ui"}, "spec": {"type": "ClusterIP"}},
    ],
    ids=["external ip", "external instance", "legacy nlb-ip", "the controller's class", "another's class", "not lb"],
)
def test_on_eks_a_load_balancer_service_the_controller_claims_passes(props):
    assert claimed(Resource(SERVICE, props)) == []


@pytest.mark.parametrize(
    "props",
    [
        lb_service(),
        lb_service({LB_TYPE: "external"}),
        lb_service({LB_TYPE: "nlb", LB_TARGET_TYPE: "ip"}),
        lb_service({LB_TYPE: "external", LB_TARGET_TYPE: "alb"}),
    ],
    ids=["no annotations", "no target type", "in-tree nlb type", "unknown target type"],
)
def test_on_eks_a_load_balancer_service_without_the_type_annotations_gets_no_nlb(props):
    """The Service would stay pending: no load balancer is ever made for it.

    The Service mutator is off (components/lb_controller.py), so nothing gives a new Service a
    loadBalancerClass. aws-load-balancer-controller v3.5.0 pkg/service/service_utils.go
    defaultServiceUtils.IsServiceSupported then takes a Service without a class only when
    checkAWSLoadBalancerTypeAnnotation finds aws-load-balancer-type `nlb-ip`, or `external` with
    aws-load-balancer-nlb-target-type `ip` or `instance`.
    """
    (message,) = claimed(Resource(SERVICE, props))
    assert "Service ui" in message and LB_TYPE in message


def test_a_gateways_type_annotations_count_only_when_its_class_copies_them():
    """consul-k8s v2.0.3 control-plane/api-gateway/gatekeeper/service.go Gatekeeper.service builds the
    gateway's Service with only the Gateway annotations listed in the GatewayClassConfig's
    copyAnnotations.service, and no loadBalancerClass: uncopied, the NLB annotations never reach it."""
    gw = Resource(GATEWAY, gateway({**NLB, SCHEME: "internal"}), urn="urn:gw")

    def release(copied: list[str]) -> Resource:
        path = {
            "managedGatewayClass": {
                "copyAnnotations": {"service": {"annotations": "".join(f"- {k}\n" for k in copied)}}
            }
        }
        return Resource(CONSUL, consul_release(connectInject={"apiGateway": path}))

    (message,) = claimed(release([SCHEME, LB_TYPE]), gw)
    assert "Gateway api-gateway" in message and "copyAnnotations" in message
    assert claimed(release([SCHEME, LB_TYPE, LB_TARGET_TYPE]), gw) == []


def test_the_consul_charts_load_balancer_services_need_the_annotations_too():
    annotations = "".join(f'"{k}": "{v}"\n' for k, v in {**NLB, SCHEME: "internal"}.items())
    bare_ui = consul_release(ui={"service": {"type": "LoadBalancer", "annotations": f'"{SCHEME}": "internal"\n'}})
    (message,) = claimed(Resource(CONSUL, bare_ui))
    assert "ui.service" in message
    ui = consul_release(ui={"service": {"type": "LoadBalancer", "annotations": annotations}})
    assert claimed(Resource(CONSUL, ui)) == []
    (message,) = claimed(Resource(CONSUL, consul_release(meshGateway={"enabled": True})))  # a LoadBalancer by default
    assert "meshGateway.service" in message
    mesh_gateway = consul_release(meshGateway={"enabled": True, "service": {"annotations": annotations}})
    assert claimed(Resource(CONSUL, mesh_gateway)) == []


@pytest.mark.parametrize("values", [{}, {"enableServiceMutatorWebhook": True}], ids=["chart default", "on"])
def test_the_controller_must_keep_its_service_mutator_off(values):
    """With the mutator on (chart 3.5.0 default, webhooks/core/service_mutator.go MutateCreate) the
    gateway's Service gets a loadBalancerClass that Consul's gateway controller erases on its next
    write, which the API server refuses: the Gateway is never Programmed (hashicorp/consul-k8s#3934)."""
    controller = Resource(CONSUL, {"chart": "aws-load-balancer-controller", "values": values}, "urn:lbc")
    violations = rules.load_balancers_claimed_by_annotations([controller])
    assert [(v.urn, "enableServiceMutatorWebhook" in v.message) for v in violations] == [("urn:lbc", True)]


def test_off_eks_the_cluster_decides_how_load_balancers_are_made():
    assert rules.load_balancers_claimed_by_annotations([Resource(SERVICE, lb_service())]) == []
    eks = Resource("aws:eks/cluster:Cluster", {}, "urn:eks")
    assert len(rules.load_balancers_claimed_by_annotations([eks, Resource(SERVICE, lb_service())])) == 1


# --- Mesh ---------------------------------------------------------------------------------------------


def mesh(allow_permissive: bool) -> Resource:
    return Resource(
        MESH, {"metadata": {"name": "mesh"}, "spec": {"allowEnablingPermissiveMutualTLS": allow_permissive}}
    )


def defaults(mode: str | None) -> Resource:
    spec = {"protocol": "http", **({"mutualTLSMode": mode} if mode else {})}
    return Resource(SERVICE_DEFAULTS, {"metadata": {"name": "api"}, "spec": spec}, urn="urn:api")


def test_no_permissive_service_defaults_once_the_mesh_forbids_it():
    violations = rules.no_permissive_mtls_when_mesh_forbids([mesh(False), defaults("permissive")])
    assert [v.urn for v in violations] == ["urn:api"]
    assert "ServiceDefaults api" in violations[0].message


@pytest.mark.parametrize(
    "resources",
    [
        [mesh(True), defaults("permissive")],  # the permissive phase
        [mesh(False), defaults("strict")],
        [mesh(False), defaults(None)],  # the hardened phase
        [defaults("permissive")],  # no Mesh in this stack
    ],
    ids=["mesh allows it", "strict", "no mode", "no mesh"],
)
def test_permissive_mode_is_fine_while_the_mesh_allows_it(resources):
    assert rules.no_permissive_mtls_when_mesh_forbids(resources) == []


# --- IAM -----------------------------------------------------------------------------------------------


def iam_policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:DescribeVpcs", "elasticloadbalancing:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    ],
    ids=["star", "service star", "partial wildcard", "not action"],
)
def test_no_iam_statement_grants_an_action_wildcard(statement):
    problems = rules.iam_action_wildcards("aws:iam/policy:Policy", iam_policy(statement))
    assert len(problems) == 1


def test_named_actions_deny_statements_and_configured_exceptions_pass():
    named = {"Effect": "Allow", "Action": ["ec2:CreateTags", "elasticloadbalancing:AddTags"], "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*"}
    assert rules.iam_action_wildcards("aws:iam/policy:Policy", iam_policy(named, deny)) == []
    star = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert rules.iam_action_wildcards("aws:iam/policy:Policy", iam_policy(star), frozenset({"s3:*"})) == []


def test_the_load_balancer_controllers_policy_needs_no_wildcard_exception():
    assert frozenset() == rules.LB_CONTROLLER_WILDCARD_ACTIONS


def test_inline_role_policies_are_checked_as_well():
    role = {"inlinePolicies": [{"name": "extra", **iam_policy({"Effect": "Allow", "Action": "*", "Resource": "*"})}]}
    problems = rules.iam_action_wildcards("aws:iam/role:Role", role)
    assert len(problems) == 1
    assert "extra" in problems[0]


# --- the real program ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_program_passes_every_rule_in_every_phase(program, stack, phase):
    run = program({"phase": phase}, stack=stack)
    assert run.error is None, run.error
    resources = as_policy(run, custom_only=True)
    assert [v.message for v in rules.check_stack(resources)] == []


EVERY_OPTION = {
    "consul": {
        "serverReplicas": 3,
        "meshGateways": True,
        "peering": True,
        "demoPrometheus": True,
        "ui": {"exposure": "public", "allowedCidrs": ["203.0.113.0/24"]},
    },
    "gateway": {"scheme": "internal"},
    "cluster": {"desiredSize": 3},  # one Consul server per node
}


def test_with_every_load_balancer_on_the_program_passes_every_rule(program):
    """The UI and mesh gateway Services exist only with their options on; the rules must see them."""
    run = program(EVERY_OPTION)
    assert run.error is None, run.error
    resources = as_policy(run, custom_only=True)
    assert [v.message for v in rules.check_stack(resources)] == []
    load_balancers = [lb.what for r in resources for lb in rules._load_balancers(r.resource_type, r.props)]  # pyright: ignore[reportPrivateUsage]
    assert sorted(load_balancers) == [
        "Consul values meshGateway.service",
        "Consul values ui.service",
        "Gateway api-gateway",
    ]


def test_the_rules_see_the_programs_resources(program):
    """Guards the test above against passing because the rules match nothing in the program."""
    run = program({"phase": "hardened"})
    assert run.error is None, run.error
    types = {r.type for r in run.resources}
    assert CONSUL in types, "no Helm release for Consul to hold to TLS and ACLs"
    assert MESH in types and SERVICE_DEFAULTS in types
    assert any(t.endswith(":Gateway") for t in types)
    assert any(t in rules.IAM_POLICY_TYPES for t in types), "no IAM policy to hold to named actions"
    charts = {rules.chart_name(r.type, r.inputs) for r in run.resources if r.custom}
    assert rules.LB_CONTROLLER_CHART in charts, "no load balancer controller: the claim rule would not apply"


# --- the pack -------------------------------------------------------------------------------------------


class _Recorder:
    """Stands in for PolicyPack, which would start a gRPC server and block."""

    def __init__(self, name: str, policies: list[Any], **kwargs: Any) -> None:
        self.name = name
        self.policies = {p.name: p for p in policies}
        self.kwargs = kwargs


def test_the_pack_wires_every_rule_as_a_mandatory_policy(monkeypatch):
    packs: list[_Recorder] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: packs.append(_Recorder(**kw)))
    monkeypatch.syspath_prepend(str(ROOT / "policy"))
    monkeypatch.delitem(sys.modules, "rules", raising=False)
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    (pack,) = packs
    assert pack.kwargs["enforcement_level"] is pulumi_policy.EnforcementLevel.MANDATORY
    assert len(pack.policies) == len(rules.RESOURCE_RULES) + len(rules.STACK_RULES)

    def resource_violations(policy: str, typ: str, props: dict[str, Any], config: dict[str, Any] | None = None):
        reported: list[str] = []
        # The rules read the type, the properties and the config only; no options or provider needed.
        args = pulumi_policy.ResourceValidationArgs(typ, props, "urn:x", "x", None, None, config)  # pyright: ignore[reportArgumentType]
        pack.policies[policy].validate(args, lambda message, urn: reported.append(message))
        return reported

    star = iam_policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    assert resource_violations("iam-no-action-wildcards", "aws:iam/policy:Policy", star)
    assert not resource_violations(
        "iam-no-action-wildcards", "aws:iam/policy:Policy", star, {"allowedWildcardActions": ["s3:*"]}
    )
    assert resource_violations("consul-tls-and-acls", CONSUL, {"chart": "consul", "values": {}})
    assert resource_violations("load-balancer-allow-list", SERVICE, lb_service())

    reported: list[tuple[str, str | None]] = []
    resources = [mesh(False), defaults("permissive")]  # what a stack rule reads of a PolicyResource
    stack = pulumi_policy.StackValidationArgs(resources)  # pyright: ignore[reportArgumentType]
    pack.policies["no-permissive-mtls-when-mesh-forbids"].validate(stack, lambda m, urn: reported.append((m, urn)))
    assert [urn for _, urn in reported] == ["urn:api"]

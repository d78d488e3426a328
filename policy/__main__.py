"""CrossGuard policy pack: `pulumi preview --policy-pack policy` (after `pulumi install` in policy/).

Only wiring: each rule is a plain function in rules.py, tested there. Constructing the PolicyPack
starts the analyzer server and blocks, so nothing imports this module.
"""

from collections.abc import Callable, Mapping
from typing import Any

import rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

MANDATORY = EnforcementLevel.MANDATORY


def _resource_policy(
    name: str, check: Callable[[str, Mapping[str, Any]], list[str]], **kwargs: Any
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in check(args.resource_type, args.props):
            report(message, None)

    return ResourceValidationPolicy(
        name=name, description=(check.__doc__ or name).split("\n")[0], validate=validate, **kwargs
    )


def _stack_policy(name: str, check: Callable[[list[Any]], list[rules.Violation]]) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for violation in check(args.resources):
            report(violation.message, violation.urn)

    return StackValidationPolicy(name=name, description=(check.__doc__ or name).split("\n")[0], validate=validate)


def _iam_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = rules.LB_CONTROLLER_WILDCARD_ACTIONS | frozenset(args.get_config().get("allowedWildcardActions", []))
    for message in rules.iam_action_wildcards(args.resource_type, args.props, allowed):
        report(message, None)


PolicyPack(
    name="consul-mesh-migration",
    enforcement_level=MANDATORY,
    policies=[
        _resource_policy("consul-tls-and-acls", rules.consul_tls_and_acls),
        _resource_policy("load-balancer-allow-list", rules.load_balancers_have_allow_lists),
        _resource_policy("eks-secrets-encrypted", rules.eks_secrets_encrypted),
        _resource_policy("eks-control-plane-logs", rules.eks_control_plane_logs),
        _resource_policy("imdsv2-hop-limit-one", rules.imds_v2_hop_limit_one),
        _resource_policy("no-admin-policies", rules.no_admin_policies),
        _resource_policy("consul-ui-private", rules.consul_ui_private),
        ResourceValidationPolicy(
            name="iam-no-action-wildcards",
            description="No IAM Allow statement with an action wildcard beyond the load balancer controller's.",
            validate=_iam_check,
            config_schema=PolicyConfigSchema(
                properties={"allowedWildcardActions": {"type": "array", "items": {"type": "string"}}}
            ),
        ),
        _stack_policy("no-permissive-mtls-when-mesh-forbids", rules.no_permissive_mtls_when_mesh_forbids),
        _stack_policy("gateway-annotations-reach-load-balancer", rules.gateway_annotations_reach_the_load_balancer),
        _stack_policy("load-balancers-claimed-by-annotations", rules.load_balancers_claimed_by_annotations),
        _stack_policy("destroy-releases-load-balancers", rules.destroy_releases_load_balancers),
    ],
)

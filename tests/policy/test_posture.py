"""The AWS and EKS posture the Security docs promise, held by the policy pack at every preview and up.

Each rule runs on the dev stack as the program renders it (under mocks), then on that same stack
with one promise broken, the way a change to the program (or a hand edit of its inputs) would break
it. Without these rules the pack passed a stack with Secrets encryption, control-plane logs and
IMDSv2 removed and AdministratorAccess attached.

`eks:index:Cluster` is pulumi-eks's component: under mocks its inputs are what the program sets; in
a real preview the pack also sees the `aws:eks/cluster:Cluster` it creates, held to the same rules.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from policy import rules
from policy.rules import Resource
from tests.conftest import as_policy

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


@pytest.fixture(scope="module")
def dev(program) -> list[Resource]:
    run = program({"phase": "hardened"})
    assert run.error is None, run.error
    return as_policy(run)


def broken(resources: list[Resource], typ: str, change: Callable[[dict[str, Any]], None]) -> list[Resource]:
    """The stack with `change` applied to the inputs of every resource of type `typ` (there must be one)."""
    out = []
    for r in resources:
        if r.resource_type == typ:
            props = copy.deepcopy(dict(r.props))
            change(props)
            out.append(dataclasses.replace(r, props=props))
        else:
            out.append(r)
    assert out != resources, f"the dev stack has no {typ}"
    return out


def messages(resources: list[Resource]) -> list[str]:
    return [v.message for v in rules.check_stack(resources)]


def test_the_dev_stack_keeps_every_promise(dev):
    assert messages(dev) == []


def _no_key(props):
    props.pop("encryptionConfigKeyArn")


def _audit_off(props):
    props["enabledClusterLogTypes"] = ["api"]


def _hop_limit_two(props):
    props["metadataOptions"]["httpPutResponseHopLimit"] = 2


def _tokens_optional(props):
    props["metadataOptions"]["httpTokens"] = "optional"


def _no_launch_template(props):
    props.pop("launchTemplate")


def _ui_node_port(props):
    props["values"].setdefault("ui", {}).setdefault("service", {})["type"] = "NodePort"


def _ui_ingress(props):
    props["values"].setdefault("ui", {})["ingress"] = {"enabled": True}


@pytest.mark.parametrize(
    ("typ", "change", "said"),
    [
        ("eks:index:Cluster", _no_key, "not envelope-encrypted"),
        ("eks:index:Cluster", _audit_off, "control-plane logs audit"),
        ("aws:ec2/launchTemplate:LaunchTemplate", _hop_limit_two, "httpPutResponseHopLimit must be 1"),
        ("aws:ec2/launchTemplate:LaunchTemplate", _tokens_optional, "httpTokens must be required"),
        ("eks:index:ManagedNodeGroup", _no_launch_template, "without a launch template"),
        ("kubernetes:helm.sh/v3:Release", _ui_node_port, "NodePort"),
        ("kubernetes:helm.sh/v3:Release", _ui_ingress, "ui.ingress.enabled"),
    ],
    ids=[
        "no secrets key",
        "no audit log",
        "IMDS two hops",
        "IMDSv1",
        "default launch template",
        "UI NodePort",
        "UI ingress",
    ],
)
def test_a_stack_that_breaks_a_promise_is_refused(dev, typ, change, said):
    found = messages(broken(dev, typ, change))
    assert len(found) == 1 and said in found[0], found


def test_an_attached_administrator_policy_is_refused_by_attachment_or_on_the_role(dev):
    attached = broken(dev, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", lambda p: p.update(policyArn=ADMIN))
    assert set(messages(attached)) == {"attaches AdministratorAccess: grant the actions the role needs instead"}
    on_role = broken(dev, "aws:iam/role:Role", lambda p: p.update(managedPolicyArns=[ADMIN]))
    assert set(messages(on_role)) == {"attaches AdministratorAccess: grant the actions the role needs instead"}
    gov = "arn:aws-us-gov:iam::aws:policy/PowerUserAccess"
    assert rules.no_admin_policies("aws:iam/policyAttachment:PolicyAttachment", {"policyArn": gov})
    # A customer-managed policy of that name is held to named actions instead (iam_action_wildcards).
    mine = "arn:aws:iam::123456789012:policy/AdministratorAccess"
    assert rules.no_admin_policies("aws:iam/rolePolicyAttachment:RolePolicyAttachment", {"policyArn": mine}) == []


def test_the_stack_of_the_issue_fails_on_every_broken_promise(dev):
    """Encryption, logging and IMDSv2 removed, AdministratorAccess attached: four refusals, not none."""

    def no_key_no_logs(props: dict[str, Any]) -> None:
        _no_key(props)
        props.pop("enabledClusterLogTypes")

    stack = broken(dev, "eks:index:Cluster", no_key_no_logs)
    stack = broken(stack, "aws:ec2/launchTemplate:LaunchTemplate", lambda p: p.pop("metadataOptions"))
    stack = broken(stack, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", lambda p: p.update(policyArn=ADMIN))
    found = messages(stack)
    for said in ("not envelope-encrypted", "control-plane logs", "httpTokens", "HopLimit", "AdministratorAccess"):
        assert any(said in m for m in found), (said, found)


@pytest.mark.parametrize(
    "props",
    [
        {"encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-west-2:1:key/k"}, "resources": ["secrets"]}},
        {"encryptionConfig": {"resources": ["secrets"]}},
        {},
    ],
    ids=["encrypted", "no key", "none"],
)
def test_the_cluster_pulumi_eks_creates_is_held_to_the_same_rules(props):
    logs = {"enabledClusterLogTypes": list(rules.REQUIRED_LOG_TYPES)}
    found = rules.eks_secrets_encrypted(rules.EKS_CLUSTER, props) + rules.eks_control_plane_logs(
        rules.EKS_CLUSTER, {**props, **logs}
    )
    assert bool(found) is ("keyArn" not in str(props))


def test_no_metadata_service_at_all_passes():
    assert rules.imds_v2_hop_limit_one(rules.INSTANCE, {"metadataOptions": {"httpEndpoint": "disabled"}}) == []
    assert rules.imds_v2_hop_limit_one(rules.INSTANCE, {}) != []


def test_the_consul_ui_on_a_load_balancer_is_the_allow_list_rules_concern(dev):
    """exposure internal or public (with allowedCidrs) is asked for in config; the allow-list rule
    (load_balancers_have_allow_lists) refuses a public UI without one, or open to 0.0.0.0/0."""
    lb = {"ui": {"service": {"type": "LoadBalancer"}}}
    assert rules.consul_ui_private("kubernetes:helm.sh/v3:Release", {"chart": "consul", "values": lb}) == []
    assert rules.load_balancers_have_allow_lists("kubernetes:helm.sh/v3:Release", {"chart": "consul", "values": lb})

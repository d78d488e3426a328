"""The AWS Load Balancer Controller's IAM policy, written out statement by statement.

Same actions, resources and conditions as the project's official policy (docs/install/iam_policy.json
in kubernetes-sigs/aws-load-balancer-controller, unchanged from v2.12 to v3.5.0): no action wildcard,
and every create, tag and delete of an AWS resource is limited to resources the controller tagged
with `elbv2.k8s.aws/cluster`. A chart upgrade that needs a new action shows up as an AccessDenied in
the controller's log; compare this file with the policy of the new release then.
"""

from __future__ import annotations

import json
from typing import Any

CLUSTER_TAG = "elbv2.k8s.aws/cluster"
_REQUEST_TAG = f"aws:RequestTag/{CLUSTER_TAG}"
_RESOURCE_TAG = f"aws:ResourceTag/{CLUSTER_TAG}"


def _allow(sid: str, actions: list[str], resources: str | list[str] = "*", **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def controller_policy(partition: str = "aws") -> dict[str, Any]:
    """The policy document; `partition` goes into the ARNs (aws, aws-cn, aws-us-gov)."""
    ec2 = f"arn:{partition}:ec2:*:*"
    elb = f"arn:{partition}:elasticloadbalancing:*:*"
    load_balancers = [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"]
    listeners = [
        f"{elb}:listener/net/*/*/*",
        f"{elb}:listener/app/*/*/*",
        f"{elb}:listener-rule/net/*/*/*",
        f"{elb}:listener-rule/app/*/*/*",
    ]
    statements = [
        _allow(
            "ServiceLinkedRoleForElb",
            ["iam:CreateServiceLinkedRole"],
            StringEquals={"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"},
        ),
        _allow(
            "Describe",
            [
                "ec2:DescribeAccountAttributes",
                "ec2:DescribeAddresses",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInternetGateways",
                "ec2:DescribeVpcs",
                "ec2:DescribeVpcPeeringConnections",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeTags",
                "ec2:GetCoipPoolUsage",
                "ec2:DescribeCoipPools",
                "ec2:GetSecurityGroupsForVpc",
                "ec2:DescribeIpamPools",
                "ec2:DescribeRouteTables",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeLoadBalancerAttributes",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeListenerCertificates",
                "elasticloadbalancing:DescribeSSLPolicies",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTrustStores",
                "elasticloadbalancing:DescribeListenerAttributes",
                "elasticloadbalancing:DescribeCapacityReservation",
            ],
        ),
        _allow(
            "CertificatesWafShield",
            [
                "cognito-idp:DescribeUserPoolClient",
                "acm:ListCertificates",
                "acm:DescribeCertificate",
                "iam:ListServerCertificates",
                "iam:GetServerCertificate",
                "waf-regional:GetWebACL",
                "waf-regional:GetWebACLForResource",
                "waf-regional:AssociateWebACL",
                "waf-regional:DisassociateWebACL",
                "wafv2:GetWebACL",
                "wafv2:GetWebACLForResource",
                "wafv2:AssociateWebACL",
                "wafv2:DisassociateWebACL",
                "shield:GetSubscriptionState",
                "shield:DescribeProtection",
                "shield:CreateProtection",
                "shield:DeleteProtection",
            ],
        ),
        _allow("SecurityGroupIngress", ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]),
        _allow("CreateSecurityGroup", ["ec2:CreateSecurityGroup"]),
        # Tags only on security groups: when creating one, and only if it carries the cluster tag.
        _allow(
            "TagNewSecurityGroup",
            ["ec2:CreateTags"],
            f"{ec2}:security-group/*",
            StringEquals={"ec2:CreateAction": "CreateSecurityGroup"},
            Null={_REQUEST_TAG: "false"},
        ),
        _allow(
            "RetagOwnSecurityGroup",
            ["ec2:CreateTags", "ec2:DeleteTags"],
            f"{ec2}:security-group/*",
            Null={_REQUEST_TAG: "true", _RESOURCE_TAG: "false"},
        ),
        _allow(
            "ManageOwnSecurityGroup",
            ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"],
            Null={_RESOURCE_TAG: "false"},
        ),
        _allow(
            "CreateTaggedLoadBalancer",
            ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
            Null={_REQUEST_TAG: "false"},
        ),
        _allow(
            "ListenersAndRules",
            [
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
            ],
        ),
        _allow(
            "RetagOwnLoadBalancer",
            ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            load_balancers,
            Null={_REQUEST_TAG: "true", _RESOURCE_TAG: "false"},
        ),
        _allow("TagListenersAndRules", ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"], listeners),
        _allow(
            "ManageOwnLoadBalancer",
            [
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:SetIpAddressType",
                "elasticloadbalancing:SetSecurityGroups",
                "elasticloadbalancing:SetSubnets",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyListenerAttributes",
                "elasticloadbalancing:ModifyCapacityReservation",
                "elasticloadbalancing:ModifyIpPools",
            ],
            Null={_RESOURCE_TAG: "false"},
        ),
        _allow(
            "TagNewLoadBalancer",
            ["elasticloadbalancing:AddTags"],
            load_balancers,
            StringEquals={"elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]},
            Null={_REQUEST_TAG: "false"},
        ),
        _allow(
            "RegisterTargets",
            ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
            f"{elb}:targetgroup/*/*",
        ),
        _allow(
            "ModifyListenersAndRules",
            [
                "elasticloadbalancing:SetWebAcl",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:AddListenerCertificates",
                "elasticloadbalancing:RemoveListenerCertificates",
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:SetRulePriorities",
            ],
        ),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def controller_policy_json(partition: str = "aws") -> str:
    return json.dumps(controller_policy(partition))

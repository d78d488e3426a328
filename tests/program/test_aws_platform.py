"""Platform eks: the VPC, EKS with managed nodes and EBS volumes, and the AWS Load Balancer Controller.

Two configurations cover it: the dev stack's defaults, and WIDE, which changes every knob at once
(three zones, a NAT gateway per zone, other node sizes, admin roles, older pins, protection off).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.cluster import eks_cluster_name
from policy.rules import creates_load_balancer, iam_action_wildcards
from program import versions

DEPLOYER_ROLE = "arn:aws:iam::123456789012:role/deployer"
ADMINS_ROLE = "arn:aws:iam::123456789012:role/platform-admins"
PREVIEW_ROLE = "arn:aws:iam::123456789012:role/ci-preview"
TEAM_ROLE = "arn:aws:iam::123456789012:role/web-team"
BOUNDARY = "arn:aws:iam::123456789012:policy/platform-boundary"
WIDE = {
    "network": {"azCount": 3, "natGateways": "perAz", "flowLogRetentionDays": 30},
    "cluster": {
        "capacityType": "SPOT",
        "instanceTypes": ["m6i.large", "m5.large"],
        "minSize": 3,
        "desiredSize": 4,
        "maxSize": 6,
        "adminRoleArns": [ADMINS_ROLE],
        "access": [
            {"principalArn": DEPLOYER_ROLE, "level": "deploy"},
            {"principalArn": PREVIEW_ROLE, "level": "preview"},
            {"principalArn": TEAM_ROLE, "level": "preview", "namespaces": ["web"]},
        ],
        "permissionsBoundaryArn": BOUNDARY,
        "logRetentionDays": 90,
        "publicAccessCidrs": ["203.0.113.0/24"],
        "logTypes": ["api", "audit"],
        "protect": False,
    },
    "ci": {"runners": "vpc"},  # a narrowed endpoint on CI's dev stack: its runners reach the private one
    "versions": {
        "kubernetes": "1.34",
        "ebsCsiAddon": "v1.52.1-eksbuild.1",
        "corednsAddon": "v1.12.4-eksbuild.1",
        "kubeProxyAddon": "v1.34.6-eksbuild.2",
        "vpcCniAddon": "v1.20.4-eksbuild.1",
        "lbControllerChart": "3.4.3",
    },
}

# Every action of the controller's official policy (docs/install/iam_policy.json, v3.5.0), by service.
OFFICIAL_ACTIONS = {
    f"{service}:{action}"
    for service, actions in {
        "acm": "DescribeCertificate ListCertificates",
        "cognito-idp": "DescribeUserPoolClient",
        "ec2": "AuthorizeSecurityGroupIngress CreateSecurityGroup CreateTags DeleteSecurityGroup DeleteTags "
        "DescribeAccountAttributes DescribeAddresses DescribeAvailabilityZones DescribeCoipPools DescribeInstances "
        "DescribeInternetGateways DescribeIpamPools DescribeNetworkInterfaces DescribeRouteTables "
        "DescribeSecurityGroups DescribeSubnets DescribeTags DescribeVpcPeeringConnections DescribeVpcs "
        "GetCoipPoolUsage GetSecurityGroupsForVpc RevokeSecurityGroupIngress",
        "elasticloadbalancing": "AddListenerCertificates AddTags CreateListener CreateLoadBalancer CreateRule "
        "CreateTargetGroup DeleteListener DeleteLoadBalancer DeleteRule DeleteTargetGroup DeregisterTargets "
        "DescribeCapacityReservation DescribeListenerAttributes DescribeListenerCertificates DescribeListeners "
        "DescribeLoadBalancerAttributes DescribeLoadBalancers DescribeRules DescribeSSLPolicies DescribeTags "
        "DescribeTargetGroupAttributes DescribeTargetGroups DescribeTargetHealth DescribeTrustStores "
        "ModifyCapacityReservation ModifyIpPools ModifyListener ModifyListenerAttributes "
        "ModifyLoadBalancerAttributes ModifyRule ModifyTargetGroup ModifyTargetGroupAttributes RegisterTargets "
        "RemoveListenerCertificates RemoveTags SetIpAddressType SetRulePriorities SetSecurityGroups SetSubnets "
        "SetWebAcl",
        "iam": "CreateServiceLinkedRole GetServerCertificate ListServerCertificates",
        "shield": "CreateProtection DeleteProtection DescribeProtection GetSubscriptionState",
        "waf-regional": "AssociateWebACL DisassociateWebACL GetWebACL GetWebACLForResource",
        "wafv2": "AssociateWebACL DisassociateWebACL GetWebACL GetWebACLForResource",
    }.items()
    for action in actions.split()
}
CLUSTER_TAG = "elbv2.k8s.aws/cluster"


@pytest.fixture(scope="module")
def dev(program):
    run = program({})
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def wide(program):
    run = program(WIDE)
    assert run.error is None, run.error
    return run


def by_id(run, type_: str) -> dict[str, Any]:
    """Resources of a type by the id the mocks gave them, as other resources refer to them."""
    return {f"{r.name}-id": r for r in run.of_type(type_)}


def subnets(run, tag: str) -> list[Any]:
    return [s for s in run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"].get(tag) == "1"]


def cluster(run) -> Any:
    return run.one("eks:index:Cluster")


def lb_release(run) -> Any:
    return run.one("kubernetes:helm.sh/v3:Release", "lb-controller-release")


def policy_document(run) -> dict[str, Any]:
    return json.loads(run.one("aws:iam/policy:Policy", "lb-controller-policy").inputs["policy"])


def grants(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if s["Effect"] == "Allow" and action in s["Action"]]


def trust(role) -> dict[str, Any]:
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    return statement


def attached(run, role) -> set[str]:
    role_name = role.inputs.get("name") or role.name
    return {
        a.inputs["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role_name
    }


# --- network ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "zones"), [({}, 2), (WIDE, 3)])
def test_a_public_and_a_private_subnet_per_zone_tagged_for_load_balancer_discovery(program, config, zones):
    run = program(config)
    assert run.error is None, run.error
    name = cluster(run).inputs["name"]
    public, private = subnets(run, "kubernetes.io/role/elb"), subnets(run, "kubernetes.io/role/internal-elb")
    assert len(public) == len(private) == zones
    assert len(run.of_type("aws:ec2/subnet:Subnet")) == 2 * zones
    for group in (public, private):
        assert len({s.inputs["availabilityZone"] for s in group}) == zones
        for s in group:
            assert s.inputs["tags"][f"kubernetes.io/cluster/{name}"] == "shared"
            assert s.inputs["mapPublicIpOnLaunch"] is False
    assert not {s.name for s in public} & {s.name for s in subnets(run, "kubernetes.io/role/internal-elb")}


def test_the_vpc_has_dns_hostnames_and_the_configured_cidr(dev):
    vpc = dev.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True
    cidrs = sorted(s.inputs["cidrBlock"] for s in dev.of_type("aws:ec2/subnet:Subnet"))
    assert cidrs == ["10.0.0.0/19", "10.0.128.0/19", "10.0.160.0/19", "10.0.32.0/19"]


def test_one_shared_nat_gateway_by_default_and_one_per_zone_when_asked(dev, wide):
    for run, count in ((dev, 1), (wide, 3)):
        nats = by_id(run, "aws:ec2/natGateway:NatGateway")
        public = by_id(run, "aws:ec2/subnet:Subnet")
        assert len(nats) == count
        nat_zones = {public[n.inputs["subnetId"]].inputs["availabilityZone"] for n in nats.values()}
        assert len(nat_zones) == count
        assert all("kubernetes.io/role/elb" in public[n.inputs["subnetId"]].inputs["tags"] for n in nats.values())
        private_routes = [r for r in run.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
        assert {r.inputs["natGatewayId"] for r in private_routes} == set(nats)
        assert all(r.inputs["destinationCidrBlock"] == "0.0.0.0/0" for r in private_routes)
    # per zone: each private subnet leaves through the NAT gateway of its own zone
    subnet_by_id, nats = by_id(wide, "aws:ec2/subnet:Subnet"), by_id(wide, "aws:ec2/natGateway:NatGateway")
    route_by_table = {r.inputs["routeTableId"]: r for r in wide.of_type("aws:ec2/route:Route")}
    for assoc in wide.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        subnet, route = subnet_by_id[assoc.inputs["subnetId"]], route_by_table[assoc.inputs["routeTableId"]]
        if "natGatewayId" in route.inputs:
            nat_subnet = subnet_by_id[nats[route.inputs["natGatewayId"]].inputs["subnetId"]]
            assert nat_subnet.inputs["availabilityZone"] == subnet.inputs["availabilityZone"]
        else:
            assert route.inputs["gatewayId"] == "network-igw-id"  # public subnets: the internet gateway


def flow_log(run) -> Any:
    return run.one("aws:ec2/flowLog:FlowLog")


def flow_log_role(run) -> Any:
    arn = flow_log(run).inputs["iamRoleArn"]
    return next(r for r in run.of_type("aws:iam/role:Role") if arn.endswith(f"/{r.name}"))


def test_vpc_flow_logs_send_accepted_and_rejected_traffic_to_a_log_group_kept_as_configured(dev, wide):
    for run, days in ((dev, 7), (wide, 30)):
        flow = flow_log(run).inputs
        group = run.one("aws:cloudwatch/logGroup:LogGroup", "network-flow-logs")
        assert flow["vpcId"] == "network-vpc-id"  # the whole VPC: every subnet and interface
        assert flow["trafficType"] == "ALL"
        assert flow["logDestinationType"] == "cloud-watch-logs"
        assert flow["logDestination"] == f"arn:aws:mock:us-west-2:123456789012:loggroup/{group.name}"
        assert group.inputs["retentionInDays"] == days
        assert group.inputs["name"] == f"/aws/vpc-flow-logs/{cluster(run).inputs['name']}"


def test_only_the_flow_logs_service_of_this_account_and_region_may_assume_the_flow_log_role(dev):
    statement = trust(flow_log_role(dev))
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ec2:us-west-2:123456789012:vpc-flow-log/*"},
    }


def test_the_flow_log_role_may_only_write_log_streams_of_its_own_log_group(dev):
    role = flow_log_role(dev)
    group_arn = flow_log(dev).inputs["logDestination"]
    (policy,) = [p for p in dev.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == f"{role.name}-id"]
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert statement["Resource"] == [group_arn, f"{group_arn}:*"]  # the group and its streams, no other group
    assert "Condition" not in statement and "NotResource" not in statement
    assert iam_action_wildcards(policy.type, policy.inputs) == []  # the policy pack's rule
    assert attached(dev, role) == set()  # no managed policy on top
    assert dev.depends_on(flow_log(dev), policy)  # allowed to write before delivery starts


def test_flow_logs_can_be_turned_off(program):
    run = program({"network": {"flowLogs": False}})
    assert run.error is None, run.error
    assert run.of_type("aws:ec2/flowLog:FlowLog") == []
    assert not [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "network-flow-logs"]
    assert [g.name for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")] == ["cluster-logs"]  # the control plane's
    assert not [r for r in run.of_type("aws:iam/role:Role") if "vpc-flow-logs" in r.inputs["assumeRolePolicy"]]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            {"network": {"flowLogRetentionDays": 10}},
            ["network.flowLogRetentionDays", "got 10", "CloudWatch Logs accepts", "1, 3, 5, 7, 14, 30", "3653"],
        ),
        ({"network": {"flowLogRetentionDays": 0}}, ["network.flowLogRetentionDays", "got 0", "7, 14"]),
        ({"network": {"flowLogs": "sometimes"}}, ["network.flowLogs", "'sometimes'", "boolean"]),
        ({"cluster": {"capacityType": "spot"}}, ["cluster.capacityType", "'spot'", "'ON_DEMAND' or 'SPOT'"]),
    ],
)
def test_a_bad_flow_log_or_capacity_setting_is_one_line_before_any_resource(program, config, words):
    run = program(config)
    assert run.error is not None and run.resources == []
    message = run.error.removeprefix("ConfigError: ")
    assert "\n" not in message
    for word in words:
        assert word in message


def test_the_cluster_name_is_the_stack_and_valid_for_eks():
    assert eks_cluster_name("consul-mesh-migration", "dev") == "consul-mesh-migration-dev"
    for stack in ("feature.x", "a" * 120, "_odd"):
        name = eks_cluster_name("consul-mesh-migration", stack)
        assert re.fullmatch(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}", name), name


# --- cluster ------------------------------------------------------------------------------------------


def test_versions_are_pinned_in_one_place_and_overridable(dev, wide):
    expected = {
        "dev": (
            versions.KUBERNETES,
            versions.EBS_CSI_ADDON,
            versions.COREDNS_ADDON,
            versions.KUBE_PROXY_ADDON,
            versions.VPC_CNI_ADDON,
            versions.LB_CONTROLLER_CHART,
        ),
        "wide": (
            "1.34",
            "v1.52.1-eksbuild.1",
            "v1.12.4-eksbuild.1",
            "v1.34.6-eksbuild.2",
            "v1.20.4-eksbuild.1",
            "3.4.3",
        ),
    }
    for run, (kubernetes, ebs_csi, coredns, kube_proxy, vpc_cni, chart) in (
        (dev, expected["dev"]),
        (wide, expected["wide"]),
    ):
        addons = {a.inputs["addonName"]: a.inputs["addonVersion"] for a in run.of_type("aws:eks/addon:Addon")}
        assert cluster(run).inputs["version"] == kubernetes
        # pulumi-eks creates these two inside the cluster component; the pins reach it.
        assert cluster(run).inputs["kubeProxyAddonOptions"]["version"] == kube_proxy
        assert cluster(run).inputs["vpcCniOptions"]["addonVersion"] == vpc_cni
        assert addons == {"aws-ebs-csi-driver": ebs_csi, "coredns": coredns}
        assert lb_release(run).inputs["version"] == chart


def test_the_control_plane_runs_as_configured(dev, wide):
    key = dev.one("aws:kms/key:Key")
    c = cluster(dev).inputs
    assert key.inputs["enableKeyRotation"] is True
    assert c["encryptionConfigKeyArn"] == f"arn:aws:mock:us-west-2:123456789012:key/{key.name}"
    assert c["kubernetesServiceIpAddressRange"] == "172.20.0.0/16"  # Consul DNS takes a fixed IP in it
    assert c["endpointPrivateAccess"] is True and c["endpointPublicAccess"] is True
    assert c["publicAccessCidrs"] == ["0.0.0.0/0"]
    assert c["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert c["createOidcProvider"] is True
    assert c["skipDefaultNodeGroup"] is True
    assert c["corednsAddonOptions"]["enabled"] is False  # components/dns.py owns the coredns add-on
    assert "storageClasses" not in c  # no gp2 default from pulumi-eks next to the gp3 one
    private = sorted(s.name + "-id" for s in subnets(dev, "kubernetes.io/role/internal-elb"))
    assert sorted(c["privateSubnetIds"]) == private
    w = cluster(wide).inputs
    assert w["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert w["enabledClusterLogTypes"] == ["api", "audit"]


def test_the_vpc_the_cluster_and_its_secrets_key_are_protected_unless_turned_off(dev, wide):
    guarded = ("aws:ec2/vpc:Vpc", "eks:index:Cluster", "aws:kms/key:Key")
    assert all(dev.one(t).options["protect"] for t in guarded)
    assert cluster(dev).inputs["deletionProtection"] is True
    assert not any(wide.one(t).options["protect"] for t in guarded)
    assert cluster(wide).inputs["deletionProtection"] is False


def test_managed_nodes_in_private_subnets_sized_from_config_with_imdsv2_hop_limit_1(dev, wide):
    for run, (capacity, types, sizes) in (
        (dev, ("ON_DEMAND", ["t3.medium"], (2, 2, 3))),
        (wide, ("SPOT", ["m6i.large", "m5.large"], (3, 4, 6))),
    ):
        nodes = run.one("eks:index:ManagedNodeGroup", "cluster-nodes")
        scaling = nodes.inputs["scalingConfig"]
        assert nodes.inputs["capacityType"] == capacity
        assert nodes.inputs["instanceTypes"] == types
        assert (scaling["minSize"], scaling["desiredSize"], scaling["maxSize"]) == sizes
        private = {s.name + "-id" for s in subnets(run, "kubernetes.io/role/internal-elb")}
        assert set(nodes.inputs["subnetIds"]) == private
        template = by_id(run, "aws:ec2/launchTemplate:LaunchTemplate")[nodes.inputs["launchTemplate"]["id"]]
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"]["encrypted"] == "true"


def test_spot_nodes_default_to_several_instance_types_of_one_size(program):
    run = program({"cluster": {"capacityType": "SPOT"}})
    assert run.error is None, run.error
    nodes = run.one("eks:index:ManagedNodeGroup", "cluster-nodes").inputs
    assert nodes["capacityType"] == "SPOT"
    assert nodes["instanceTypes"] == ["t3.medium", "t3a.medium"]  # 2 vCPU, 4 GiB, 17 pods each


def test_the_node_role_has_the_worker_policies_and_nothing_more(dev):
    nodes = dev.one("eks:index:ManagedNodeGroup")
    role = next(r for r in dev.of_type("aws:iam/role:Role") if nodes.inputs["nodeRoleArn"].endswith(f"/{r.name}"))
    assert trust(role)["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert attached(dev, role) == {
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    }


def irsa_role_for(run, service_account: str) -> Any:
    issuer = cluster_oidc_issuer(run)
    return next(
        r
        for r in run.of_type("aws:iam/role:Role")
        if trust(r).get("Condition", {}).get("StringEquals", {}).get(f"{issuer}:sub") == service_account
    )


def cluster_oidc_issuer(run) -> str:
    return f"oidc.eks.us-west-2.amazonaws.com/id/MOCK{sum(map(ord, cluster(run).name))}"


@pytest.mark.parametrize(
    ("service_account", "policy"),
    [
        ("system:serviceaccount:kube-system:ebs-csi-controller-sa", "service-role/AmazonEBSCSIDriverPolicy"),
        ("system:serviceaccount:kube-system:aws-load-balancer-controller", None),
    ],
)
def test_each_aws_facing_workload_has_its_own_irsa_role(dev, service_account, policy):
    role = irsa_role_for(dev, service_account)
    statement = trust(role)
    issuer = cluster_oidc_issuer(dev)
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{issuer}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"][f"{issuer}:aud"] == "sts.amazonaws.com"
    expected = (
        {f"arn:aws:iam::aws:policy/{policy}"} if policy else {"arn:aws:iam::123456789012:policy/lb-controller-policy"}
    )
    assert attached(dev, role) == expected


def test_the_ebs_csi_add_on_and_an_encrypted_gp3_class_that_is_the_only_default(dev):
    addon = dev.one("aws:eks/addon:Addon", "cluster-ebs-csi")
    role = irsa_role_for(dev, "system:serviceaccount:kube-system:ebs-csi-controller-sa")
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    assert addon.inputs["serviceAccountRoleArn"] == f"arn:aws:iam::123456789012:role/{role.name}"
    assert dev.depends_on(addon, dev.one("eks:index:ManagedNodeGroup"))  # ACTIVE needs running pods
    classes = dev.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    defaults = [
        c
        for c in classes
        if c.inputs["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
    ]
    assert len(defaults) == 1
    gp3 = defaults[0].inputs
    assert gp3["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert gp3["provisioner"] == "ebs.csi.aws.com"
    assert gp3["parameters"]["type"] == "gp3" and gp3["parameters"]["encrypted"] == "true"
    assert gp3["volumeBindingMode"] == "WaitForFirstConsumer"
    assert gp3["allowVolumeExpansion"] is True
    assert dev.depends_on(defaults[0], addon)


# --- load balancer controller ----------------------------------------------------------------------------


def test_the_controller_policy_grants_every_official_action_and_no_wildcard(dev):
    document = policy_document(dev)
    granted = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert OFFICIAL_ACTIONS - granted == set()
    assert granted - OFFICIAL_ACTIONS == set()
    assert not [a for a in granted if "*" in a]
    assert not [s for s in document["Statement"] if "NotAction" in s or "NotResource" in s]


def test_the_controller_policy_keeps_the_official_scoping(dev):
    document = policy_document(dev)
    request_tagged = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"}}
    for action in ("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"):
        assert all(s["Condition"] == request_tagged for s in grants(document, action))
    for action in (
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "ec2:DeleteSecurityGroup",
    ):
        for s in grants(document, action):
            assert s["Condition"]["Null"][f"aws:ResourceTag/{CLUSTER_TAG}"] == "false", action
    for action in ("ec2:CreateTags", "ec2:DeleteTags"):
        assert all(
            s["Resource"] == "arn:aws:ec2:*:*:security-group/*" and s["Condition"] for s in grants(document, action)
        )
    for action in ("elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"):
        assert all(s["Resource"] != "*" for s in grants(document, action))
    (slr,) = grants(document, "iam:CreateServiceLinkedRole")
    assert slr["Condition"] == {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}


def test_the_controller_release_is_named_pinned_and_given_cluster_region_vpc_and_its_role(dev):
    release = lb_release(dev)
    inputs, values = release.inputs, release.inputs["values"]
    assert inputs["name"] == "aws-load-balancer-controller"
    assert inputs["chart"] == "aws-load-balancer-controller"
    assert inputs["repositoryOpts"]["repo"] == "https://aws.github.io/eks-charts"
    assert inputs["namespace"] == "kube-system"
    assert not inputs.get("skipAwait")  # Services wait for it, so it must wait for its pods
    role = irsa_role_for(dev, "system:serviceaccount:kube-system:aws-load-balancer-controller")
    assert values["clusterName"] == cluster(dev).inputs["name"] == dev.outputs["clusterName"]
    assert values["region"] == "us-west-2"
    assert values["vpcId"] == dev.outputs["vpcId"] == "network-vpc-id"
    assert values["serviceAccount"] == {
        "create": True,
        "name": "aws-load-balancer-controller",
        "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::123456789012:role/{role.name}"},
    }


def test_the_service_mutator_is_off_so_the_api_gateway_can_be_programmed(dev):
    """On, the API gateway on EKS never becomes Programmed.

    Chart 3.5.0 (helm/aws-load-balancer-controller values.yaml enableServiceMutatorWebhook: true,
    templates/webhook.yaml mservice.elbv2.k8s.aws, operations CREATE) sends every new Service to
    webhooks/core/service_mutator.go serviceMutator.MutateCreate, which sets spec.loadBalancerClass
    service.k8s.aws/nlb on a LoadBalancer Service. consul-k8s v2.0.3
    control-plane/api-gateway/gatekeeper/service.go Gatekeeper.upsertService -> mergeServiceInto sets
    existing.Spec = desired.Spec (no class) on every reconcile; the API server refuses the change of
    the immutable field, and GatewayController.Reconcile (api-gateway/controllers/gateway_controller.go)
    returns at updateGatekeeperResources before it writes the Gateway's status (hashicorp/consul-k8s#3934).
    """
    assert lb_release(dev).inputs["values"]["enableServiceMutatorWebhook"] is False


def test_teardown_order_load_balancers_then_controller_then_nodes_cluster_and_vpc(dev):
    """With the Service mutator off nothing orders creation, but destroy still needs this order.

    A LoadBalancer Service the controller reconciled carries its finalizer service.k8s.aws/resources
    (pkg/shared_constants/finalizers.go); controllers/service/service_controller.go
    serviceReconciler.cleanupLoadBalancerResources deletes the NLB and then removes it. Were the
    controller gone first, the Service would hang in deletion and the NLB, its security groups and
    ENIs would stay behind, so the subnets and the VPC could not be deleted.
    """
    release = lb_release(dev)
    nodes = dev.one("eks:index:ManagedNodeGroup")
    assert dev.depends_on(release, nodes)
    assert dev.depends_on(nodes, cluster(dev))
    assert dev.depends_on(cluster(dev), dev.one("aws:ec2/vpc:Vpc"))
    assert dev.depends_on(release, dev.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "lb-controller-policy"))
    makers = [r for r in dev.resources if r.custom and creates_load_balancer(r.type, r.inputs)]
    makers.append(dev.one("kubernetes:helm.sh/v3:Release", "consul-release"))  # its UI and mesh gateway Services
    assert all(dev.depends_on(r, release) for r in makers)


# --- provider and outputs --------------------------------------------------------------------------------


def test_every_kubernetes_resource_goes_through_the_clusters_explicit_provider(dev):
    provider = dev.one("pulumi:providers:kubernetes")
    assert dev.by_urn(provider.parent) == dev.one("consul-mesh-migration:cluster:EksCluster")
    objects = [r for r in dev.resources if r.custom and r.type.startswith("kubernetes:")]
    assert objects
    stray = [f"{r.type} {r.name}" for r in objects if not r.provider.startswith(provider.urn + "::")]
    assert stray == []


def test_the_stack_exports_cluster_name_vpc_and_kubeconfig(dev):
    assert dev.outputs["clusterName"] == "consul-mesh-migration-dev"
    assert dev.outputs["vpcId"] == "network-vpc-id"
    kubeconfig = json.loads(dev.outputs["kubeconfig"])
    assert kubeconfig["kind"] == "Config" and kubeconfig["clusters"]


def test_platform_kubernetes_registers_no_aws_or_eks_resource(program):
    run = program({}, stack="local")
    assert run.error is None, run.error
    assert not [r.type for r in run.resources if r.type.startswith(("aws:", "eks:"))]
    assert not [c for c in run.calls if c["token"].startswith("aws:")]


def test_every_node_group_runs_the_control_planes_kubernetes_version(dev, wide):
    """With a launch template pulumi-eks leaves the node group's version to the caller
    (nodes/nodegroup.ts createManagedNodeGroup); left unset, a version bump moved the control plane
    alone, and EKS refused the next bump until the nodes caught up (update-cluster: nodes first)."""
    for run, minor in ((dev, versions.KUBERNETES), (wide, "1.34")):
        assert cluster(run).inputs["version"] == minor
        groups = run.of_type("eks:index:ManagedNodeGroup")
        assert groups and {g.inputs["version"] for g in groups} == {minor}
        assert all(g.inputs.get("launchTemplate") for g in groups)  # the case where pulumi-eks sets none


def test_the_control_plane_logs_go_to_a_group_the_stack_owns_with_a_retention(dev, wide):
    """EKS creates /aws/eks/<name>/cluster itself, never expiring and never deleted (issue 21 item 10)."""
    for run, days in ((dev, 30), (wide, 90)):
        group = run.one("aws:cloudwatch/logGroup:LogGroup", "cluster-logs")
        assert group.inputs["name"] == f"/aws/eks/{cluster(run).inputs['name']}/cluster"
        assert group.inputs["retentionInDays"] == days
        # Created before the cluster writes to it, deleted after the cluster on destroy.
        assert run.depends_on(cluster(run), group)


def test_consul_servers_never_run_on_spot(dev, wide):
    """With SPOT nodes, an on-demand group of one node per server; the servers select it
    (components/consul_values.py). On-demand stacks need no second group."""
    assert [g.name for g in dev.of_type("eks:index:ManagedNodeGroup")] == ["cluster-nodes"]
    servers = wide.one("eks:index:ManagedNodeGroup", "cluster-servers").inputs
    assert servers["capacityType"] == "ON_DEMAND"
    assert servers["scalingConfig"] == {"minSize": 1, "desiredSize": 1, "maxSize": 1}  # consul.serverReplicas
    assert servers["instanceTypes"] == ["t3.small"]
    assert servers["subnetIds"] == ["network-private-0-id"]  # one server: the zone of its volume


def test_every_iam_role_and_policy_carries_the_stacks_path_tags_and_boundary(dev, wide):
    for run, boundary in ((dev, None), (wide, BOUNDARY)):
        made = run.of_type("aws:iam/role:Role") + run.of_type("aws:iam/policy:Policy")
        # node, EBS CSI, flow logs, the LB controller's role and policy, the snapshots' two roles
        assert len(made) == 7
        for r in made:
            assert r.inputs["path"] == "/consul-mesh-migration/dev/"
            assert r.inputs["namePrefix"].endswith("-")
            assert r.inputs["tags"]["consul-mesh-migration:stack"] == "dev"
            assert r.inputs.get("permissionsBoundary") == (boundary if r.type.endswith("role:Role") else None)
            # A deployed role keeps its name: renaming replaces it (and its node group or its pods' role).
            assert set(r.options["ignoreChanges"]) == {"path", "namePrefix"}
        assert cluster(run).inputs["tags"]["consul-mesh-migration:cluster"] == cluster(run).inputs["name"]

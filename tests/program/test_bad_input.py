"""Every bad config is refused before any resource is registered, with a message naming it.

Each row: the config given, then the words the one-line message must contain (the key, the bad
value, and what is allowed).
"""

from __future__ import annotations

import pytest

ADMIN = "arn:aws:iam::123456789012:role/platform-admins"
BAD = [
    ({"phase": "permisive"}, ["phase", "'permisive'", "'permissive'"]),
    ({"phase": "migrated"}, ["phase", "'migrated'", "'hardened'"]),
    ({"phase": "STRICT"}, ["phase", "'STRICT'", "did you mean 'strict'"]),
    ({"platform": "EKS"}, ["platform", "'EKS'", "did you mean 'eks'"]),
    ({"Phase": "strict"}, ["Phase", "unknown key", "did you mean 'phase'"]),
    (
        {"consul.serverReplicas": "3"},
        ["consul.serverReplicas", "without --path", "config set --path consul.serverReplicas 3"],
    ),
    ({"platform": "gke"}, ["platform", "'gke'", "'eks' or 'kubernetes'"]),
    ({"phse": "strict"}, ["phse", "unknown key", "did you mean 'phase'"]),
    ({"allowPhaseJump": "perhaps"}, ["allowPhaseJump", "'perhaps'", "boolean"]),
    ({"network": {"cidr": "10.0.0.0/33"}}, ["network.cidr", "10.0.0.0/33", "IPv4 network"]),
    ({"network": {"cidr": "10.0.0.0/8"}}, ["network", "10.0.0.0/8", "/16 and /24"]),
    ({"network": {"cidr": "10.0.0.1/16"}}, ["network.cidr", "'10.0.0.1/16'", "did you mean '10.0.0.0/16'"]),
    ({"network": {"azCount": 1}}, ["network.azCount", "got 1", "greater than or equal to 2"]),
    ({"network": {"natGateway": "single"}}, ["network.natGateway", "did you mean 'natGateways'"]),
    ({"network": {"natGateways": "three"}}, ["network.natGateways", "'three'", "'single' or 'perAz'"]),
    (
        {"network": {"publicSubnets": ["10.1.0.0/24", "10.0.1.0/24"]}},
        ["publicSubnets", "10.1.0.0/24", "outside the VPC CIDR 10.0.0.0/16"],
    ),
    (
        {"network": {"publicSubnets": ["10.0.0.0/24", "10.0.0.128/25"]}},
        ["subnets", "10.0.0.0/24", "10.0.0.128/25", "overlap"],
    ),
    ({"network": {"privateSubnets": ["10.0.200.0/24"]}}, ["privateSubnets", "1 CIDRs", "azCount is 2"]),
    (
        {"network": {"publicSubnets": ["10.0.0.0/29", "10.0.0.8/29"]}},
        ["publicSubnets", "10.0.0.0/29", "/16 and /28"],
    ),
    ({"cluster": {"minSize": 4, "desiredSize": 3}}, ["cluster", "minSize <= desiredSize <= maxSize", "4, 3, 3"]),
    ({"cluster": {"maxSize": 0}}, ["cluster.maxSize", "got 0", "greater than or equal to 1"]),
    ({"cluster": {"instanceTypes": "t3.large"}}, ["cluster.instanceTypes", "'t3.large'", "list"]),
    (
        {"cluster": {"adminRoleArns": ["admin"]}},
        ["cluster.adminRoleArns[0]", "'admin'", "arn:aws:iam::123456789012:role/"],
    ),
    (
        {"cluster": {"adminRoleArns": [ADMIN, ADMIN]}},
        ["cluster.adminRoleArns", ADMIN, "listed twice", "list each principal once"],
    ),
    # EKS takes one entry per principal: one level each.
    (
        {"cluster": {"adminRoleArns": [ADMIN], "access": [{"principalArn": ADMIN, "level": "preview"}]}},
        ["cluster.access", ADMIN, "listed twice", "one level"],
    ),
    (
        {
            "cluster": {
                "access": [{"principalArn": "arn:aws:sts::123456789012:assumed-role/ci/run-1", "level": "deploy"}]
            }
        },
        ["cluster.access[0].principalArn", "assumed-role", "IAM role or user ARN", "not an sts"],
    ),
    (
        {"cluster": {"access": [{"principalArn": ADMIN, "level": "read"}]}},
        ["cluster.access[0].level", "'read'", "'admin', 'deploy' or 'preview'"],
    ),
    (
        {"cluster": {"permissionsBoundaryArn": "platform-boundary"}},
        ["cluster.permissionsBoundaryArn", "'platform-boundary'", "managed policy ARN"],
    ),
    ({"cluster": {"logRetentionDays": 10}}, ["cluster.logRetentionDays", "got 10", "CloudWatch Logs accepts"]),
    ({"cluster": {"instanceTypes": ["t3"]}}, ["cluster.instanceTypes[0]", "'t3'", "EC2 instance type", "t3.large"]),
    (
        {"cluster": {"instanceTypes": ["T3.large"]}},
        ["cluster.instanceTypes[0]", "'T3.large'", "did you mean 't3.large'"],
    ),
    ({"cluster": {"instanceTypes": ["t3.micro"]}}, ["cluster.instanceTypes", "t3.micro", "4 pods", "small or larger"]),
    ({"cluster": {"logTypes": ["apiserver"]}}, ["cluster.logTypes[0]", "'apiserver'", "'api'"]),
    ({"cluster": {"serviceCidr": "8.8.0.0/16"}}, ["cluster.serviceCidr", "8.8.0.0/16", "10.0.0.0/8"]),
    ({"cluster": {"serviceCidr": "172.20.0.0/25"}}, ["cluster.serviceCidr", "172.20.0.0/25", "/12 to /24"]),
    (
        {"cluster": {"serviceCidr": "10.0.0.0/16"}, "consul": {"dnsClusterIp": "10.0.0.53"}},
        ["cluster.serviceCidr 10.0.0.0/16", "overlaps network.cidr 10.0.0.0/16"],
    ),
    ({"consul": {"serverReplicas": 2}}, ["consul.serverReplicas", "got 2", "odd"]),
    ({"consul": {"serverReplicas": 9}}, ["consul.serverReplicas", "got 9", "less than or equal to 7"]),
    ({"consul": {"serverReplicas": 5}}, ["consul.serverReplicas 5", "cluster.desiredSize is 2"]),
    ({"consul": {"serverReplica": 3}}, ["consul.serverReplica", "did you mean 'serverReplicas'"]),
    ({"consul": {"peering": True}}, ["consul.peering true", "consul.meshGateways true"]),
    (
        {"platform": "kubernetes", "consul": {"serverReplicas": 3, "dnsClusterIp": "172.20.0.53"}},
        ["consul.serverReplicas 3", "cluster.nodeCount is 1"],
    ),
    ({"cluster": {"nodeCount": 3}}, ["cluster.nodeCount 3", "platform kubernetes", "cluster.desiredSize"]),
    (
        {
            "platform": "kubernetes",
            "cluster": {"serviceCidr": "10.96.0.0/16", "access": [{"principalArn": ADMIN, "level": "admin"}]},
            "consul": {"dnsClusterIp": "10.96.0.53"},
        },
        ["cluster.access is for platform eks", "EKS access entries"],
    ),
    (
        {
            "platform": "kubernetes",
            "cluster": {"serviceCidr": "10.96.0.0/16"},
            "consul": {"dnsClusterIp": "10.96.0.53", "snapshots": {"enabled": True}},
        },
        ["consul.snapshots.enabled is for platform eks", "S3 bucket"],
    ),
    (
        {"consul": {"snapshots": {"schedule": "hourly"}}},
        ["consul.snapshots.schedule", "'hourly'", "five-field cron schedule"],
    ),
    ({"consul": {"dnsClusterIp": "10.96.0.10"}}, ["consul.dnsClusterIp 10.96.0.10", "172.20.0.0/16"]),
    ({"consul": {"dnsClusterIp": "172.20.0.10"}}, ["consul.dnsClusterIp 172.20.0.10", "kube-dns", "172.20.0.53"]),
    (
        {"consul": {"dnsClusterIp": "172.20.0.1"}},
        ["consul.dnsClusterIp 172.20.0.1", "`kubernetes` API", "free address"],
    ),
    ({"consul": {"dnsClusterIp": "172.20.0.0"}}, ["consul.dnsClusterIp 172.20.0.0", "network address", "free address"]),
    (
        {
            "platform": "kubernetes",
            "cluster": {"serviceCidr": "10.96.0.0/16"},
            "consul": {"dnsClusterIp": "10.96.0.10"},
        },
        ["consul.dnsClusterIp 10.96.0.10", "kube-dns", "10.96.0.53"],
    ),
    ({"consul": {"datacenter": "DC1"}}, ["consul.datacenter", "'DC1'", "did you mean 'dc1'"]),
    ({"consul": {"datacenter": "dc_1"}}, ["consul.datacenter", "'dc_1'", "DNS label"]),
    ({"consul": {"ui": {"exposure": "public"}}}, ["consul.ui", "'public'", "allowedCidrs"]),
    (
        {"consul": {"ui": {"exposure": "public", "allowedCidrs": ["0.0.0.0/0"]}}},
        ["consul.ui", "0.0.0.0/0", "list your CIDRs"],
    ),
    ({"consul": {"ui": {"exposure": "nodePort"}}}, ["consul.ui.exposure", "'nodePort'", "'clusterIP'"]),
    ({"gateway": {"scheme": "public"}}, ["gateway.scheme", "'public'", "'internet-facing' or 'internal'"]),
    ({"gateway": {"allowedCidrs": []}}, ["gateway.allowedCidrs", "at least 1"]),
    ({"gateway": {"service": "frontend"}}, ["gateway.service", "'frontend'", "api, web"]),
    ({"services": [{"name": "Api"}]}, ["services[0].name", "'Api'", "DNS label", "did you mean 'api'"]),
    ({"services": [{"name": "a" * 64}]}, ["services[0].name", "a" * 64, "up to 63"]),
    ({"services": [{"name": "consul"}]}, ["services[0].name", "'consul'", "Consul's own service", "allowed"]),
    ({"services": [{"name": "api-gateway"}]}, ["services[0].name", "'api-gateway'", "API gateway", "allowed"]),
    ({"services": [{"name": "api", "namespace": "kube-system"}]}, ["services[0]", "'kube-system'", "not consul"]),
    ({"services": [{"name": "api", "namespace": "consul"}]}, ["services[0]", "namespace 'consul'", "Consul's own"]),
    ({"services": [{"name": "default"}]}, ["services[0]", "(from the name) 'default'", "a new namespace"]),
    ({"services": [{"name": "api", "port": 80}]}, ["services[0].port", "got 80", "1024"]),
    ({"services": [{"name": "api", "port": 20000}]}, ["services[0].port", "got 20000", "inbound", "except 8600"]),
    ({"services": [{"name": "api", "port": 15001}]}, ["services[0].port", "got 15001", "outbound", "except 8600"]),
    (
        {"services": [{"name": "api"}, {"name": "api"}, {"name": "web"}]},
        ["services", "unique", "api"],
    ),
    ({"services": [{"name": "web", "upstreams": ["db"]}]}, ["services[0].upstreams", "'db'", "allowed"]),
    ({"versions": {"consulChart": "latest"}}, ["versions.consulChart", "'latest'", "1.2.3"]),
    ({"versions": {"consulImage": "hashicorp/consul:latest"}}, ["versions.consulImage", "'latest'", "pin"]),
    (
        {"versions": {"fakeServiceImage": "nicholasjackson/fake-service"}},
        ["versions.fakeServiceImage", "pinned by tag or digest"],
    ),
    ({"versions": {"kubernetes": "1.35.2"}}, ["versions.kubernetes", "'1.35.2'", "1.35"]),
    ({"versions": {"kubernetes": 1.35}}, ["versions.kubernetes", "got 1.35", 'quote it: "1.35"']),
    ({"versions": {"kubernetes": 1.3}}, ["versions.kubernetes", "got 1.3", 'quote it: "1.30"']),
    (
        {"versions": {"kubernetes": "1.34"}},
        ["versions.kubeProxyAddon v1.35.3-eksbuild.2", "versions.kubernetes is 1.34", "v1.34.x-eksbuild.N"],
    ),
    (
        {"versions": {"consulImage": "registry.example.com:5000/consul"}},
        ["versions.consulImage", ":5000/consul'", "@sha256"],
    ),
    ({"versions": {"ebsCsiAddon": "1.53"}}, ["versions.ebsCsiAddon", "'1.53'", "eksbuild"]),
    ({"network": "10.0.0.0/16"}, ["network", "'10.0.0.0/16'", "object"]),
    # The dev stack is CI's (ci.runners github-hosted): a narrowed endpoint would shut out its runners.
    (
        {"cluster": {"publicAccessCidrs": ["203.0.113.0/24"]}},
        ["cluster.publicAccessCidrs 203.0.113.0/24", "ci.runners github-hosted", "ci.runnerCidrs", "ci.runners vpc"],
    ),
    (
        {
            "cluster": {"publicAccessCidrs": ["203.0.113.0/24"]},
            "ci": {"runners": "github-hosted", "runnerCidrs": ["198.51.100.0/28"]},
        },
        ["ci.runnerCidrs 198.51.100.0/28", "outside cluster.publicAccessCidrs 203.0.113.0/24"],
    ),
    (
        {"ci": {"runners": "vpc", "runnerCidrs": ["198.51.100.0/28"]}},
        ["ci", "runnerCidrs is for runners github-hosted"],
    ),
    ({"ci": {"runners": "gitlab"}}, ["ci.runners", "'gitlab'", "'github-hosted'"]),
    # The policy pack would refuse it at the first preview (policy/rules.py eks_control_plane_logs).
    ({"cluster": {"logTypes": ["api", "authenticator"]}}, ["cluster.logTypes", "no audit", "with audit among them"]),
    ({"cluster": {"logTypes": []}}, ["cluster.logTypes", "[] has no audit"]),
]


@pytest.mark.parametrize(("config", "words"), BAD, ids=[str(c) for c, _ in BAD])
def test_bad_config_is_refused_before_any_resource_with_a_clear_message(program, config, words):
    run = program(config)
    assert run.error is not None, "the program accepted a bad config"
    assert run.resources == [], "a resource was registered before the config was checked"
    assert run.error.startswith("ConfigError: config consul-mesh-migration")
    assert "Traceback" not in run.error
    for word in words:
        assert word in run.error


def test_there_are_at_least_twenty_bad_configs_covering_every_config_object():
    assert len(BAD) >= 20
    covered = {key for config, _ in BAD for key in config}
    assert {"phase", "platform", "network", "cluster", "consul", "gateway", "services", "versions", "ci"} <= covered


NARROWED = {"publicAccessCidrs": ["203.0.113.0/24"]}


@pytest.mark.parametrize(
    "config",
    [
        {"cluster": NARROWED, "ci": {"runners": "vpc"}},
        {"cluster": NARROWED, "ci": {"runners": "github-hosted", "runnerCidrs": ["203.0.113.16/28"]}},
        {"cluster": NARROWED, "ci": {"runners": "none"}},
    ],
    ids=["runners in the VPC", "the runners' static ranges inside", "no CI"],
)
def test_a_narrowed_endpoint_is_accepted_with_a_supported_way_for_ci_to_reach_it(program, config):
    """The supported ways (docs/operations/team-workflow.md, "CI and the EKS API endpoint"): runners in
    the VPC reach the private endpoint, which the cluster always has; or the runners' own ranges."""
    run = program(config)
    assert run.error is None, run.error
    (cluster,) = [r for r in run.resources if r.type == "eks:index:Cluster"]
    assert cluster.inputs["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert cluster.inputs["endpointPrivateAccess"] is True

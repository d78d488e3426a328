"""Stack config: defaults that deploy as-is, and bad input stopped with a message that names it."""

from __future__ import annotations

import ipaddress
import re

import pytest

from migration.phases import Phase
from program.config import ConfigError, StackConfig, parse_config


def test_defaults_describe_a_dev_stack_that_deploys_as_is():
    cfg = parse_config({})
    assert cfg.phase is Phase.DISCOVERY
    assert cfg.platform == "eks"
    assert cfg.allow_phase_jump is False
    assert [s.name for s in cfg.services] == ["api", "web"]
    assert cfg.service("api").migrates and not cfg.service("web").migrates
    assert cfg.service("web").upstreams == ["api"]
    assert cfg.consul.server_replicas == 1
    assert cfg.consul.ui.exposure == "clusterIP"
    assert not (cfg.consul.mesh_gateways or cfg.consul.peering or cfg.consul.demo_prometheus)
    assert cfg.gateway.scheme == "internet-facing"
    assert cfg.consul.dns_cluster_ip in cfg.cluster.service_cidr


def test_config_keys_are_camel_case_and_nested_objects_validate():
    cfg = parse_config(
        {
            "phase": "strict",
            "network": {"cidr": "10.20.0.0/16", "azCount": 3, "natGateways": "perAz"},
            "cluster": {"desiredSize": 3, "adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admins"]},
            "consul": {"serverReplicas": 3, "ui": {"exposure": "internal"}},
            "services": [{"name": "api", "migrates": True}, {"name": "web", "upstreams": ["api"]}],
        }
    )
    assert cfg.phase is Phase.STRICT
    assert cfg.network.az_count == 3
    assert cfg.consul.server_replicas == 3


def test_on_an_existing_cluster_three_servers_need_cluster_node_count_three():
    """The chart's server.affinity is a required pod anti-affinity per hostname: with fewer nodes than
    servers the extra servers stay Pending and the Helm release times out waiting for them."""
    cfg = parse_config({"platform": "kubernetes", "cluster": {"nodeCount": 3}, "consul": {"serverReplicas": 3}})
    assert cfg.cluster.node_count == 3
    assert parse_config({"platform": "kubernetes"}).cluster.node_count == 1  # kind: one node
    with pytest.raises(ConfigError, match=r"cluster\.nodeCount is 1"):
        parse_config({"platform": "kubernetes", "consul": {"serverReplicas": 3}})


def test_peering_comes_with_mesh_gateways():
    """The chart fails without them: "setting global.peering.enabled to true requires meshGateway.enabled"."""
    assert parse_config({"consul": {"peering": True, "meshGateways": True}}).consul.peering
    with pytest.raises(ConfigError, match=r"consul\.meshGateways true"):
        parse_config({"consul": {"peering": True}})


def test_default_subnets_are_one_public_and_one_private_per_zone_inside_the_vpc():
    public, private = parse_config({"network": {"azCount": 3}}).network.subnet_cidrs()
    vpc = ipaddress.IPv4Network("10.0.0.0/16")
    assert len(public) == len(private) == 3
    assert all(s.subnet_of(vpc) for s in public + private)
    assert len({*public, *private}) == 6


def test_a_third_service_is_a_config_change():
    cfg = parse_config(
        {
            "services": [
                {"name": "api", "migrates": True},
                {"name": "payments", "migrates": True},
                {"name": "web", "upstreams": ["api", "payments"]},
            ]
        }
    )
    assert cfg.service("payments").ns == "payments"


def test_the_model_is_immutable():
    cfg = parse_config({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is internal
        cfg.phase = Phase.HARDENED  # type: ignore[misc]
    assert isinstance(cfg, StackConfig)


def test_did_you_mean_for_a_mistyped_phase():
    with pytest.raises(ConfigError) as err:
        parse_config({"phase": "permisive"})
    assert str(err.value) == (
        "config consul-mesh-migration:phase: got 'permisive'; allowed: 'discovery', 'permissive', "
        "'strict', 'virtual' or 'hardened' (did you mean 'permissive'?)"
    )


def _leaf_keys(model: type, prefix: str = "") -> set[str]:
    """Every leaf config key of a model, dotted, as a user writes it with `pulumi config set --path`."""
    from pydantic import BaseModel

    keys = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        key = f"{prefix}{field.alias or name}"
        args = getattr(field.annotation, "__args__", (field.annotation,))
        sub = next((a for a in args if isinstance(a, type)), None)
        item = "[]" if getattr(field.annotation, "__origin__", None) is list else ""
        keys |= _leaf_keys(sub, f"{key}{item}.") if sub is not None and issubclass(sub, BaseModel) else {key}
    return keys


def test_every_top_level_key_is_declared_in_pulumi_yaml():
    import yaml

    from tests.conftest import ROOT

    declared = set(yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"])
    assert declared == {field.alias or name for name, field in StackConfig.model_fields.items()}


def test_the_readme_documents_every_config_key():
    """The README's table holds every key; the pins under `versions` are on their own page."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "reference" / "versions.md").read_text()

    # Keys that share a row are written `a.b` / `c` (e.g. `cluster.minSize` / `desiredSize`); a
    # service's fields are listed by name in the services paragraph.
    def documented(key: str) -> bool:
        last = key.rsplit(".", 1)[-1]
        return f"`{key}`" in readme or f"/ `{last}`" in readme or ("[]." in key and f"`{last}`" in readme)

    missing = sorted(key for key in _leaf_keys(StackConfig) if not documented(key))
    assert missing == []


# --- config a real deploy would refuse, refused now; config it would accept, accepted ---------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "image",
    [
        f"hashicorp/consul@{DIGEST}",
        f"hashicorp/consul:2.0.3@{DIGEST}",
        f"hashicorp/consul:latest@{DIGEST}",  # the digest pins it; the tag is only a label
        "registry.example.com:5000/hashicorp/consul:2.0.3",
        f"localhost:5000/consul@{DIGEST}",
        "public.ecr.aws/hashicorp/consul:2.0.3",
    ],
)
def test_images_pinned_by_digest_or_from_a_registry_with_a_port_are_accepted(image):
    """The kubelet pulls every one of these (the distribution/reference grammar: [host[:port]/]path
    [:tag][@digest]); refusing them kept mirrors and digest pins out."""
    cfg = parse_config({"versions": {"consulImage": image, "fakeServiceImage": image}})
    assert cfg.versions.consul_image == cfg.versions.fake_service_image == image


@pytest.mark.parametrize(
    "image",
    [
        "hashicorp/consul",
        "hashicorp/consul:latest",
        "registry.example.com:5000/hashicorp/consul",
        "hashicorp/consul@sha256:0123",
        "Hashicorp/consul:2.0.3",
    ],
    ids=["untagged", "latest", "untagged with a port", "short digest", "uppercase path"],
)
def test_unpinned_or_malformed_images_are_refused(image):
    with pytest.raises(ConfigError, match=r"versions\.consulImage"):
        parse_config({"versions": {"consulImage": image}})


@pytest.mark.parametrize("port", [8600, 15001, 19000, 20000, 20200, 20400, 20600, 21000])
def test_a_service_port_its_sidecar_takes_is_refused(port):
    """On a meshed pod consul-k8s v2.0.3 binds these itself: 20000 inbound and 21000 health
    (connect-inject/constants/constants.go), 19000 Envoy admin and 8600 DNS
    (webhook/consul_dataplane_sidecar.go), 15001 the transparent proxy's outbound port
    (webhook/redirect_traffic.go), 20200 Prometheus (chart connectInject.metrics), 20300-20500 the
    probes Envoy exposes (webhook/mesh_webhook.go), 20600 graceful shutdown. The app or Envoy fails to
    bind and the pod never becomes ready."""
    with pytest.raises(ConfigError, match=rf"services\[0\]\.port: got {port}; taken on a meshed pod"):
        parse_config({"services": [{"name": "api", "port": port}]})


@pytest.mark.parametrize("port", [1024, 9091, 15006, 20001, 65535])
def test_other_service_ports_are_free(port):
    """15006 is Istio's inbound port; consul-k8s v2.0.3 does not use it."""
    cfg = parse_config({"services": [{"name": "api", "port": port}], "gateway": {"service": "api"}})
    assert cfg.services[0].port == port


@pytest.mark.parametrize(
    "service",
    [{"name": "api", "namespace": "kube-system"}, {"name": "api", "namespace": "consul"}, {"name": "default"}],
)
def test_a_service_in_a_namespace_that_exists_already_or_is_consuls_is_refused(service):
    """The program creates (and on destroy deletes) a Namespace per service namespace: `default` and
    kube-* exist already, so the create fails, and `consul` is the Consul release's. Catalog sync skips
    consul, kube-system and kube-public too, so a v1 there would never be <name>.service.consul."""
    with pytest.raises(ConfigError, match=r"services\[0\]: namespace"):
        parse_config({"services": [service]})


@pytest.mark.parametrize("ip", ["172.20.0.0", "172.20.0.1", "172.20.0.10", "172.20.255.255"])
def test_consul_dns_never_takes_an_address_the_service_range_has_given_away(ip):
    """The chart's consul-dns Service asks for this clusterIP. The API server refuses the network and
    broadcast addresses (outside the allocatable range) and an address held by another Service: the
    first is `kubernetes`, the 10th kube-dns (EKS 172.20.0.10, kind 10.96.0.10). The Helm release fails."""
    with pytest.raises(ConfigError, match=rf"consul\.dnsClusterIp {re.escape(ip)} is .* in cluster\.serviceCidr"):
        parse_config({"consul": {"dnsClusterIp": ip}})
    assert str(parse_config({"consul": {"dnsClusterIp": "172.20.0.11"}}).consul.dns_cluster_ip) == "172.20.0.11"


def test_kube_proxy_is_the_build_for_the_clusters_kubernetes_version():
    """kube-proxy's build is named after its Kubernetes version, and EKS refuses the add-on for another
    minor than the cluster's. The other add-ons (CoreDNS, VPC CNI, EBS CSI) are versioned on their own:
    which builds a Kubernetes version takes is only in `aws eks describe-addon-versions`, so EKS checks them."""
    with pytest.raises(
        ConfigError, match=r"versions\.kubeProxyAddon v1\.35\.3-eksbuild\.2 is kube-proxy for Kubernetes"
    ):
        parse_config({"versions": {"kubernetes": "1.34"}})
    matching = parse_config({"versions": {"kubernetes": "1.34", "kubeProxyAddon": "v1.34.1-eksbuild.2"}})
    assert matching.versions.kubernetes == "1.34"
    # An existing cluster installs no add-on.
    assert parse_config({"platform": "kubernetes", "versions": {"kubernetes": "1.34"}}).versions.kubernetes == "1.34"


@pytest.mark.parametrize("instance_type", ["t3.micro", "t3.nano", "t4g.micro"])
def test_instance_types_with_no_room_for_pods_are_refused(instance_type):
    """With the VPC CNI a node runs at most its ENI pod limit (eni-max-pods): 4 for nano and micro
    sizes, all taken by the DaemonSets every node runs (aws-node, kube-proxy, ebs-csi-node,
    consul-cni). Consul and the services would stay Pending."""
    with pytest.raises(ConfigError, match="runs at most 4 pods"):
        parse_config({"cluster": {"instanceTypes": ["t3.large", instance_type]}})
    assert parse_config({"cluster": {"instanceTypes": ["t3.small"]}}).cluster.instance_types == ["t3.small"]


@pytest.mark.parametrize("name", ["consul", "api-gateway"])
def test_a_service_named_like_one_of_consuls_own_is_refused(name):
    """`consul` is the servers' own service in the catalog (consul.service.consul would answer with both),
    and the API gateway registers as GATEWAY_NAME: a demo service of that name would share the gateway's
    intentions and config entries."""
    from components.gateway import GATEWAY_NAME
    from program.config import RESERVED_SERVICE_NAMES

    assert GATEWAY_NAME in RESERVED_SERVICE_NAMES
    with pytest.raises(ConfigError, match=rf"services\[0\]\.name: got '{name}'"):
        parse_config({"services": [{"name": name}]})


# --- a service's own phase, by name: what make plan and make advance write --------------------------

THREE = [{"name": "api", "migrates": True}, {"name": "web", "upstreams": ["api"]}, {"name": "slow"}]


def test_a_service_phase_is_set_by_its_name_and_overrides_the_stacks():
    cfg = parse_config({"phase": "permissive", "phases": {"web": "virtual"}, "services": THREE})
    assert cfg.target() == {"api": Phase.PERMISSIVE, "web": Phase.VIRTUAL, "slow": Phase.PERMISSIVE}


def test_the_older_list_form_still_selects_the_same_phases():
    listed = [THREE[0], {**THREE[1], "phase": "virtual"}, THREE[2]]
    assert (
        parse_config({"phase": "permissive", "services": listed}).target()
        == parse_config({"phase": "permissive", "phases": {"web": "virtual"}, "services": THREE}).target()
    )


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        ({"phases": {"db": "strict"}}, "config consul-mesh-migration:phases.db: 'db' is not a service; allowed: api"),
        (
            {"phases": {"web": "strict"}, "services": [THREE[0], {**THREE[1], "phase": "virtual"}]},
            "config consul-mesh-migration:phases.web: got strict, but services[1].phase says virtual",
        ),
    ],
)
def test_a_service_phase_for_no_service_or_set_twice_is_refused(raw, line):
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert str(e.value).startswith(line)


def test_config_commands_name_the_services_ahead_and_the_stack():
    cfg = parse_config({"services": THREE})
    before = {"api": Phase.PERMISSIVE, "web": Phase.STRICT, "slow": Phase.DISCOVERY}
    after = {"api": Phase.PERMISSIVE, "web": Phase.VIRTUAL, "slow": Phase.PERMISSIVE}
    assert cfg.config_commands(after, "dev", before=before) == [
        "pulumi config set phase permissive --stack dev",
        "pulumi config rm --path phases.api --stack dev",
        "pulumi config set --path phases.web virtual --stack dev",
    ]
    same = dict.fromkeys(["api", "web", "slow"], Phase.VIRTUAL)
    assert cfg.config_commands(same, "dev", before=dict.fromkeys(same, Phase.STRICT)) == [
        "pulumi config set phase virtual --stack dev"
    ]


def test_config_commands_move_a_stack_file_off_the_list_form_once():
    cfg = parse_config({"phase": "strict", "services": [THREE[0], {**THREE[1], "phase": "virtual"}, THREE[2]]})
    target = {"api": Phase.STRICT, "web": Phase.HARDENED, "slow": Phase.VIRTUAL}
    assert cfg.config_commands(target, "local") == [
        "pulumi config rm --path 'services[1].phase' --stack local",
        "pulumi config set --path phases.web hardened --stack local",
        "pulumi config set --path phases.slow virtual --stack local",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        {"services": THREE},
        {"phase": "strict", "phases": {"web": "virtual"}, "services": THREE},
        {"phase": "strict", "services": [THREE[0], {**THREE[1], "phase": "virtual"}, THREE[2]]},
    ],
)
def test_what_selecting_sets_selects_exactly_those_phases(raw):
    """make advance and make plan write `selecting`'s keys over the stack's config; the program then
    reads back the phases they meant, whatever the stack file held before."""
    cfg = parse_config(raw)
    for target in (
        {"api": Phase.PERMISSIVE, "web": Phase.VIRTUAL, "slow": Phase.DISCOVERY},
        dict.fromkeys(["api", "web", "slow"], Phase.HARDENED),
    ):
        assert parse_config({**raw, **cfg.selecting(target)}).target() == target

"""Stack config: defaults that deploy as-is, and bad input stopped with a message that names it."""

from __future__ import annotations

import ipaddress

import pytest

from stacks.config import ConfigError, StackConfig, parse_config
from stacks.phases import Phase


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
    with pytest.raises(ConfigError, match="cluster.nodeCount is 1"):
        parse_config({"platform": "kubernetes", "consul": {"serverReplicas": 3}})


def test_peering_comes_with_mesh_gateways():
    """The chart fails without them: "setting global.peering.enabled to true requires meshGateway.enabled"."""
    assert parse_config({"consul": {"peering": True, "meshGateways": True}}).consul.peering
    with pytest.raises(ConfigError, match="consul.meshGateways true"):
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

    from tools.mockrun import PROJECT_DIR

    declared = set(yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["config"])
    assert declared == {field.alias or name for name, field in StackConfig.model_fields.items()}


def test_the_readme_documents_every_config_key():
    from tools.mockrun import PROJECT_DIR

    readme = (PROJECT_DIR / "README.md").read_text()

    # Keys that share a row are written `a.b` / `c` (e.g. `cluster.minSize` / `desiredSize`); a
    # service's fields are listed by name in the services paragraph.
    def documented(key: str) -> bool:
        last = key.rsplit(".", 1)[-1]
        return f"`{key}`" in readme or f"/ `{last}`" in readme or ("[]." in key and f"`{last}`" in readme)

    missing = sorted(key for key in _leaf_keys(StackConfig) if not documented(key))
    assert missing == []

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

"""consul.mode: install (the default, tests/program/test_consul.py), external and existing.

Each external rendering's values were also rendered with the real chart (consul-k8s v2.0.3) through
/work/shared/tools/helm_check.py while this was built; the tests hold what those renders showed and
what the chart's own `fail` checks and templates require.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.consul import ConsulArgs, existing_gateway
from components.consul_values import ConsulSettings, ExternalSettings, chart_values
from program.config import ConfigError, parse_config

SECRETS = {
    "caCert": {"secretName": "vm-ca", "secretKey": "ca.pem"},
    "bootstrapToken": {"secretName": "vm-acl", "secretKey": "bootstrap"},
}
EXTERNAL = {"mode": "external", "external": {"hosts": ["consul.example.internal"], **SECRETS}}
EXISTING = {"mode": "existing", "existing": {"release": "consul", "namespace": "consul"}}


def chart_release(run) -> Any:
    return next(
        (r for r in run.resources if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs.get("chart") == "consul"),
        None,
    )


@pytest.fixture(scope="module")
def external_run(program):
    run = program({"consul": EXTERNAL})
    assert run.error is None, run.error
    return run


def test_external_runs_the_kubernetes_side_only_against_the_servers_named(external_run):
    values = chart_release(external_run).inputs["values"]
    # templates/server-acl-init-job.yaml:2 fails "only one of server.enabled or externalServers.enabled".
    assert values["server"] == {"enabled": False}
    assert values["externalServers"] == {
        "enabled": True,
        "hosts": ["consul.example.internal"],  # the chart reads only the first (`first`, _helpers.tpl)
        "httpsPort": 8501,
        "grpcPort": 8502,
        # On eks the servers validate tokens at the cluster's endpoint: kubernetes.default.svc does not
        # resolve outside the cluster (server-acl-init/connect_inject.go defaultKubernetesHost).
        "k8sAuthMethodHost": "https://mock.eks",
    }
    assert "consul-namespace" not in {r.name for r in external_run.resources}  # the user's, with the Secrets


def test_external_reads_the_ca_and_the_token_from_the_secrets_the_user_names_and_nothing_else(external_run):
    g = chart_release(external_run).inputs["values"]["global"]
    # No tls-init without servers: every consumer mounts caCert (connect-inject-deployment.yaml 378-387).
    assert g["tls"] == {
        "enabled": True,
        "verify": True,
        "httpsOnly": True,
        "caCert": {"secretName": "vm-ca", "secretKey": "ca.pem"},
    }
    # Bootstrapped servers: server-acl-init uses this token (-bootstrap-token-secret-name/-key).
    assert g["acls"] == {"manageSystemACLs": True, "bootstrapToken": {"secretName": "vm-acl", "secretKey": "bootstrap"}}
    assert g["gossipEncryption"] == {"autoGenerate": False}  # gossip is between agents: none here
    assert "enableAutoEncrypt" not in g["tls"]  # for the chart's servers and client agents only
    assert not [r for r in external_run.resources if r.type == "kubernetes:core/v1:Secret"]
    assert external_run.outputs["bootstrapTokenSecret"] == "consul/vm-acl"


def test_external_dns_comes_from_the_dns_proxy_on_the_same_fixed_address(external_run):
    """templates/dns-service.yaml selects hasDNS pods (servers and client agents): none here; the DNS
    proxy's Service takes dns.clusterIP (templates/dns-proxy-service.yaml), where CoreDNS forwards."""
    values = chart_release(external_run).inputs["values"]
    assert values["dns"] == {
        "enabled": True,
        "enableRedirection": True,
        "clusterIP": "172.20.0.53",
        "proxy": {"enabled": True},
    }
    assert values["ui"] == {"enabled": False}  # ui-service.yaml renders only with the chart's servers
    assert external_run.outputs["consulUi"] == "https://consul.example.internal:8501/ui/ (the external servers' own)"


def test_external_values_are_built_whole_from_settings():
    e = ExternalSettings(
        "10.0.8.12", 443, 8502, "server.dc1.consul", ("ca", "tls.crt"), ("t", "token"), "https://203.0.113.10:6443"
    )
    settings = ConsulSettings(
        platform="kubernetes",
        datacenter="dc1",
        server_replicas=1,
        dns_cluster_ip="10.96.0.53",
        image="i",
        image_k8s="k",
        image_dataplane="d",
        sync_namespaces=[],
        external=e,
    )
    values = chart_values(settings).to_helm()
    assert values["externalServers"]["tlsServerName"] == "server.dc1.consul"
    assert values["externalServers"]["k8sAuthMethodHost"] == "https://203.0.113.10:6443"
    assert "terminatingGateways" not in values  # only while destinations need one


@pytest.mark.parametrize(
    ("consul", "words"),
    [
        ({"mode": "external"}, ["consul.mode external needs consul.external"]),
        ({**EXTERNAL, "mode": "install"}, ["consul.external is for consul.mode external"]),
        ({**EXTERNAL, "serverReplicas": 3}, ["consul.serverReplicas is not for consul.mode external"]),
        (
            {"mode": "external", "external": {"hosts": ["10.0.8.12"], **SECRETS}},
            ["'10.0.8.12' is not a DNS name", "tlsServerName"],
        ),
        (
            {"mode": "external", "external": {"hosts": ["a.example", "b.example"], **SECRETS}},
            ["consul.external.hosts", "at most 1"],
        ),
        (
            {"mode": "external", "external": {"hosts": ["a.example"], "caCert": SECRETS["caCert"]}},
            ["consul.external.bootstrapToken", "field required"],
        ),
        (
            {"mode": "external", "external": {"hosts": ["a.example"], **SECRETS, "caCert": {"secretName": "ca"}}},
            ["consul.external.caCert.secretKey", "field required"],
        ),
        ({"mode": "existing"}, ["consul.mode existing needs consul.existing"]),
        (
            {**EXISTING, "dnsClusterIp": "172.20.0.53"},
            ["consul.dnsClusterIp is not for consul.mode existing", "CoreDNS alone"],
        ),
    ],
)
def test_what_a_mode_needs_is_refused_in_one_line_before_anything_is_registered(consul, words):
    with pytest.raises(ConfigError) as e:
        parse_config({"consul": consul})
    assert len(str(e.value).splitlines()) == 1
    for word in words:
        assert word in str(e.value)


def test_a_mode_that_cannot_work_on_the_platform_is_refused():
    with pytest.raises(ConfigError, match=r"consul\.mode existing is for platform kubernetes"):
        parse_config({"consul": EXISTING})
    with pytest.raises(ConfigError, match=r"consul\.external\.k8sAuthMethodHost is needed on platform kubernetes"):
        parse_config({"platform": "kubernetes", "consul": {**EXTERNAL, "dnsClusterIp": "172.20.0.53"}})


def test_existing_installs_nothing_of_consul_and_keeps_the_migrations_objects_in_the_releases_namespace(program):
    run = program({"consul": {**EXISTING, "existing": {"release": "mesh", "namespace": "hashicorp"}}}, stack="local")
    assert run.error is None, run.error
    assert chart_release(run) is None
    assert not [r for r in run.resources if r.type == "kubernetes:core/v1:Namespace" and r.k8s_name == "hashicorp"]
    assert "consul-dns" not in {r.name for r in run.resources}  # CoreDNS is left alone
    entries = {r.kind: r.k8s_namespace for r in run.resources if r.type.startswith("kubernetes:consul.hashicorp.com")}
    assert entries["Mesh"] == entries["ProxyDefaults"] == "hashicorp"
    gateway = run.one("kubernetes:gateway.networking.k8s.io/v1:Gateway", "gateway-gateway")
    assert gateway.k8s_namespace == "hashicorp"
    assert run.outputs["consulUi"] == "served by the release mesh in hashicorp"
    # The precheck reads the Mesh where it lives, with a Role there.
    role = run.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "checks-precheck-mesh")
    assert role.k8s_namespace == "hashicorp"


def _helm_values(**over: Any) -> dict[str, str]:
    """A `helm-values` ConfigMap's data as consul-k8s v2.0.3's chart writes it (consul-helm-values-configmap.yaml)."""
    import json

    doc = {
        "release": {"name": "consul", "namespace": "consul", "service": "Helm"},
        "global": {"name": "consul", "datacenter": "dc1", "acls": {"manageSystemACLs": True}},
        "terminatingGateways": {"enabled": True, "gateways": [{"name": "terminating-gateway", "consulNamespace": ""}]},
        **over,
    }
    return {"values.json": json.dumps(doc)}


def test_an_existing_release_gives_its_terminating_gateway_or_is_refused_naming_why():
    from components.target import ClusterTarget

    args = ConsulArgs(
        target=ClusterTarget("kubernetes", None),  # type: ignore[arg-type]
        chart_version="",
        settings=None,  # type: ignore[arg-type]
        mode="existing",
        existing_gateway="terminating-gateway",
    )
    assert existing_gateway(_helm_values(), args, "dc1") == "terminating-gateway"
    with pytest.raises(Exception, match=r"serves datacenter 'dc1'; set consul\.datacenter to it"):
        existing_gateway(_helm_values(), args, "dc2")
    with pytest.raises(Exception, match="belongs to release 'other'"):
        existing_gateway(_helm_values(release={"name": "other"}), args, "dc1")
    with pytest.raises(Exception, match="runs no terminating gateway; the destinations need 'terminating-gateway'"):
        existing_gateway(_helm_values(terminatingGateways={"enabled": False, "gateways": []}), args, "dc1")

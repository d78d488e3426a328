"""`.consul` names resolve from every pod: CoreDNS forwards the consul domain to Consul DNS.

A pod outside the mesh (api-v1, web's v1 callers) asks CoreDNS for api.service.consul; CoreDNS
forwards the `consul` zone to the Consul DNS Service, whose ClusterIP is fixed by the chart values.
"""

from __future__ import annotations

import json

from components.dns import corefile

LOCAL = {"stack": "local"}


def _server_blocks(text: str) -> list[str]:
    """The opening line of each top-level server block."""
    return [line for line in text.splitlines() if line.endswith("{") and not line.startswith(" ")]


def test_the_corefile_keeps_the_cluster_default_and_adds_a_consul_zone():
    for platform in ("eks", "kubernetes"):
        text = corefile(platform, "172.20.0.53")
        assert _server_blocks(text) == [".:53 {", "consul:53 {"]
        default, consul = text.split("consul:53 {")
        assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in default
        assert "forward . /etc/resolv.conf" in default
        assert "reload" in default  # CoreDNS picks the new Corefile up without a restart
        assert consul.split() == ["errors", "cache", "5", "forward", ".", "172.20.0.53", "}"]


def test_each_platform_keeps_its_own_default_server_block():
    eks, kubeadm = corefile("eks", "10.0.0.1"), corefile("kubernetes", "10.0.0.1")
    assert "max_concurrent 1000" in kubeadm and "max_concurrent" not in eks
    assert "disable success cluster.local" in kubeadm


def test_on_eks_the_coredns_add_on_carries_the_corefile_so_add_on_updates_keep_it(program):
    run = program({})
    assert run.error is None, run.error
    addon = run.one("aws:eks/addon:Addon", "consul-dns-coredns")
    assert addon.inputs["addonName"] == "coredns"
    assert addon.inputs["addonVersion"] == "v1.13.1-eksbuild.1"
    assert addon.inputs["resolveConflictsOnCreate"] == "OVERWRITE"
    assert addon.inputs["resolveConflictsOnUpdate"] == "OVERWRITE"
    assert addon.inputs["clusterName"]
    assert json.loads(addon.inputs["configurationValues"]) == {"corefile": corefile("eks", "172.20.0.53")}
    assert addon.inputs["preserve"] is True  # deleting the add-on never removes cluster DNS
    [controller] = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if "load-balancer" in r.inputs["chart"]]
    assert run.depends_on(addon, controller)  # nodes are up, so the add-on can turn ACTIVE
    assert not run.of_type("kubernetes:core/v1:ConfigMapPatch")


def test_on_kind_the_coredns_configmap_is_patched_declaratively(program):
    run = program({}, **LOCAL)
    assert run.error is None, run.error
    patch = run.one("kubernetes:core/v1:ConfigMapPatch", "consul-dns-coredns")
    assert (patch.k8s_namespace, patch.k8s_name) == ("kube-system", "coredns")
    assert patch.inputs["data"] == {"Corefile": corefile("kubernetes", "10.96.0.53")}
    assert patch.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"  # kubeadm owns it first
    assert patch.options["retainOnDelete"]  # destroy leaves CoreDNS a Corefile
    assert not [r for r in run.resources if r.type.startswith("aws:")]


def test_coredns_forwards_to_the_ip_the_chart_gives_consul_dns(program):
    for run in (program({}), program({}, **LOCAL)):
        assert run.error is None, run.error
        consul_ip = run.one("kubernetes:helm.sh/v3:Release", "consul-release").inputs["values"]["dns"]["clusterIP"]
        addons = [r for r in run.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "coredns"]
        text = (
            json.loads(addons[0].inputs["configurationValues"])["corefile"]
            if addons
            else run.one("kubernetes:core/v1:ConfigMapPatch").inputs["data"]["Corefile"]
        )
        assert f"forward . {consul_ip}\n" in text.split("consul:53 {")[1]

"""The stack outputs users and scripts read after `pulumi up`."""

from __future__ import annotations

PLATFORM_OUTPUTS = {"clusterName", "vpcId", "kubeconfig"}
EVERY_STACK = {"phase", "nextPhase", "verify", "gatewayUrl", "consulUi", "bootstrapTokenSecret"}


def test_an_eks_stack_exports_the_cluster_the_gateway_and_the_phase(program):
    run = program({})
    assert run.error is None, run.error
    assert set(run.outputs) == EVERY_STACK | PLATFORM_OUTPUTS
    assert run.outputs["phase"] == "discovery"
    assert run.outputs["nextPhase"] == "permissive"
    assert run.outputs["gatewayUrl"].startswith("http://")


def test_the_kubeconfig_is_exported_only_as_a_secret(program):
    run = program({})
    assert "kubeconfig" in run.secret_outputs
    assert run.secret_outputs <= {"kubeconfig"}, "only the kubeconfig carries credentials"


def test_an_existing_cluster_exports_no_aws_outputs(program):
    run = program({}, stack="local")
    assert run.error is None, run.error
    assert set(run.outputs) == EVERY_STACK


def test_the_last_phase_has_no_next_phase(program):
    assert program({"phase": "hardened"}).outputs["nextPhase"] is None

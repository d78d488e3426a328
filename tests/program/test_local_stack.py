"""The `local` stack: the whole migration on a kind cluster, with no AWS account.

Same program, same phases, same guard; only the platform differs (an existing cluster reached
through the kubeconfig context `kind-consul-mesh`).
"""

from __future__ import annotations

import pytest

from migration.phases import PHASE_NAMES

CLOUD_PACKAGES = ("aws:", "awsx:", "eks:")


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_local_stack_evaluates_in_every_phase_with_no_aws_resource(program, phase):
    run = program({"phase": phase}, stack="local")
    assert run.error is None, run.error
    cloud = sorted({r.type for r in run.resources if r.type.startswith(CLOUD_PACKAGES)})
    assert cloud == [], f"the local stack would need an AWS account for: {cloud}"
    assert not [c for c in run.calls if c["token"].startswith(CLOUD_PACKAGES)]
    assert run.outputs["phase"] == phase


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_kubernetes_resource_goes_to_the_kind_cluster(program, phase):
    run = program({"phase": phase}, stack="local")
    provider = run.one("pulumi:providers:kubernetes")
    assert provider.inputs.get("context") == "kind-consul-mesh"
    assert not provider.inputs.get("kubeconfig"), "kind writes its context into the ambient kubeconfig"
    stray = [
        f"{r.type} {r.name}"
        for r in run.resources
        if r.custom and r.type.startswith("kubernetes:") and not r.provider.startswith(provider.urn + "::")
    ]
    assert stray == []


def test_the_phase_guard_applies_on_the_local_stack_too(program):
    run = program({"phase": "strict"}, stack="local", deployed={"phase": "discovery"})
    assert run.error is not None
    assert "'discovery'" in run.error
    assert "permissive" in run.error

"""The stack outputs users and scripts read after `pulumi up`."""

from __future__ import annotations

PLATFORM_OUTPUTS = {"clusterName", "vpcId", "kubeconfig", "snapshotBucket"}
EVERY_STACK = {
    "phase",
    "phases",
    "dialedDirectly",
    "nextPhase",
    "versions",
    "verify",
    "gatewayUrl",
    "consulUi",
    "bootstrapTokenSecret",
}


def exported(run) -> set[str]:
    """The outputs by name; the seal (`seal-<hash>`, one per set of phases) counts as `seal-*`."""
    return {"seal-*" if k.startswith("seal-") else k for k in run.outputs}


def test_an_eks_stack_exports_the_cluster_the_gateway_and_the_phase(program):
    run = program({})
    assert run.error is None, run.error
    assert exported(run) == EVERY_STACK | PLATFORM_OUTPUTS | {"seal-*"}
    assert run.outputs["phase"] == "discovery"
    assert run.outputs["phases"] == {"api": "discovery", "web": "discovery"}
    assert run.outputs["nextPhase"] == "permissive"
    assert run.outputs["gatewayUrl"].startswith("http://")


def test_the_kubeconfig_is_exported_only_as_a_secret(program):
    run = program({})
    assert "kubeconfig" in run.secret_outputs
    assert run.secret_outputs <= {"kubeconfig"}, "only the kubeconfig carries credentials"


def test_an_existing_cluster_exports_no_aws_outputs(program):
    run = program({}, stack="local")
    assert run.error is None, run.error
    assert exported(run) == EVERY_STACK | {"seal-*"}


def test_the_last_phase_has_no_next_phase(program):
    assert program({"phase": "hardened"}).outputs["nextPhase"] is None


def test_the_phase_is_reported_only_once_every_object_of_the_phase_is_in_place_and_proven(program):
    """After a failed `up` the stack keeps the last verified phases, so the guard steps from there."""
    run = program({"phase": "permissive"})
    postcheck = next(j for j in run.of_type("kubernetes:batch/v1:Job") if "postcheck" in j.name)
    seal = next(k for k in run.outputs if k.startswith("seal-"))
    for key in ("phase", "phases", seal):
        assert postcheck.urn in run.output_dependencies[key], key
    deployments = run.of_type("kubernetes:apps/v1:Deployment")
    assert len(deployments) == 3
    entries = [r for r in run.resources if r.type.startswith("kubernetes:consul.hashicorp.com/")]
    for res in [*deployments, *(e for e in entries if e.kind != "RouteTimeoutFilter")]:
        assert run.depends_on(postcheck, res), res.name


def test_without_verification_the_phase_waits_for_the_objects_themselves(program):
    run = program({"phase": "permissive", "verify": {"enabled": False}})
    assert [j for j in run.of_type("kubernetes:batch/v1:Job") if "check" in j.name] == []
    deployments = {r.urn for r in run.of_type("kubernetes:apps/v1:Deployment")}
    assert deployments <= run.output_dependencies["phases"]


def test_the_readme_documents_every_output(program):
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert [key for key in exported(program({})) if f"| `{key}` |" not in readme] == []

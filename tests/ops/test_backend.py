"""Where a stack's state lives (ops/backend.py): the warning `make up` gives an EKS stack on the
local file backend, and what counts as CI for the demos."""

from __future__ import annotations

import pytest

from ops import backend
from tests.conftest import ROOT


def test_an_eks_stack_on_the_local_file_backend_is_told_where_a_team_keeps_state(tmp_path, capsys):
    """Without it nothing says that the dev stack's only record of an EKS cluster is a folder on one
    laptop, whose lock file no colleague's `pulumi up` ever sees (pulumi pkg/backend/diy/lock.go)."""
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  consul-mesh-migration:platform: eks\n")
    assert backend.main(["--stack", "dev"], env={}, root=tmp_path) == 0
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: stack dev (platform eks) keeps its state in file://{tmp_path}/.pulumi-state")
    assert "s3://<bucket>/consul-mesh-migration?region=<region>" in warning and "lock" in warning
    assert "https://api.pulumi.com" in warning


@pytest.mark.parametrize(
    ("stack_file", "env"),
    [
        ("config:\n  consul-mesh-migration:platform: kubernetes\n", {}),
        ("config:\n  consul-mesh-migration:platform: eks\n", {"PULUMI_BACKEND_URL": "s3://state/cmm?region=eu-west-1"}),
        ("config:\n  consul-mesh-migration:platform: eks\n", {"PULUMI_BACKEND_URL": "https://api.pulumi.com"}),
    ],
    ids=["kind cluster", "s3", "pulumi cloud"],
)
def test_other_stacks_and_shared_backends_get_no_warning(tmp_path, capsys, stack_file, env):
    (tmp_path / "Pulumi.dev.yaml").write_text(stack_file)
    assert backend.main(["--stack", "dev"], env=env, root=tmp_path) == 0
    assert capsys.readouterr().err == ""


def test_a_stack_file_without_a_platform_is_eks_as_pulumi_yaml_says(tmp_path):
    (tmp_path / "Pulumi.x.yaml").write_text("config: {}\n")
    assert backend.stack_platform("x", tmp_path) == "eks"
    assert backend.stack_platform("dev", ROOT) == "eks"
    assert backend.stack_platform("local", ROOT) == "kubernetes"
    assert "default: eks" in (ROOT / "Pulumi.yaml").read_text().split("platform:", 1)[1].split("description")[0]


@pytest.mark.parametrize(
    ("env", "ci"),
    [({}, False), ({"CI": "true"}, True), ({"GITHUB_ACTIONS": "true"}, True), ({"CI": "false"}, False)],
)
def test_ci_is_what_github_actions_sets(env, ci):
    assert backend.in_ci(env) is ci


def test_a_new_kms_key_is_announced_so_that_the_stack_file_gets_committed(tmp_path, capsys):
    """Without the commit, every CI preview would write a new data key into the stack file."""
    (tmp_path / "Pulumi.dev.yaml").write_text("secretsprovider: awskms://alias/x?region=eu-west-1\nconfig: {}\n")
    backend.main(["--stack", "dev"], env={"PULUMI_BACKEND_URL": "s3://b/p"}, root=tmp_path)
    assert "Commit Pulumi.dev.yaml" in capsys.readouterr().err
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "secretsprovider: awskms://alias/x?region=eu-west-1\nencryptedkey: AQICAHh...\nconfig: {}\n"
    )
    backend.main(["--stack", "dev"], env={"PULUMI_BACKEND_URL": "s3://b/p"}, root=tmp_path)
    assert capsys.readouterr().err == ""

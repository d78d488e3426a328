"""What a reviewed plan is bound to (ops/plans.py): the stack file's own secrets provider, the git
tree the plan was made from, and what a fresh preview would do now.

The plan documents are built the way the CLI writes `--save-plan` files: `apitype.DeploymentPlanV1`
(pulumi sdk/go/common/apitype/plan.go: `manifest`, `config`, `resourcePlans` of `ResourcePlanV1`
with `goal` (GoalV1), `steps`, `state`, `seed`) serialized by pkg/resource/stack/plan.go
`SerializePlan`, a secret as `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
"ciphertext": ...}` (sdk/go/common/resource/sig/sig.go) with a fresh nonce in each preview.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops import plans
from ops.plans import PlanError
from tests.conftest import ROOT

URN = "urn:pulumi:dev::consul-mesh-migration::consul-mesh-migration:consul:Consul$kubernetes:helm.sh/v3:Release::consul"
NEW = "urn:pulumi:dev::consul-mesh-migration::kubernetes:core/v1:Namespace::extra"
PROVIDER = "urn:pulumi:dev::consul-mesh-migration::pulumi:providers:kubernetes::cluster-k8s::0b1f2c3d"


def secret(nonce: bytes) -> dict[str, str]:
    return {plans.SIG_KEY: plans.SECRET_SIG, "ciphertext": "v1:" + base64.b64encode(nonce).decode()}


def plan(*, steps: list[str] | None = None, replicas: int = 3, nonce: bytes = b"n1", seed: bytes = b"s1") -> dict:
    goal = {
        "type": "kubernetes:helm.sh/v3:Release",
        "name": "consul",
        "custom": True,
        "inputDiff": {"updates": {"values": {"server": {"replicas": replicas}, "gossip": secret(nonce)}}},
        "outputDiff": {"updates": {"status": {"revision": 7 if nonce == b"n1" else 8}}},
        "parent": "urn:pulumi:dev::consul-mesh-migration::consul-mesh-migration:consul:Consul::consul",
        "protect": False,
        "provider": PROVIDER,
        "dependencies": [],
    }
    return {
        "manifest": {"time": "2026-12-03T07:00:00Z", "magic": "abc", "version": "v3.272.0"},
        "config": {"consul-mesh-migration:phase": "strict"},
        "resourcePlans": {
            URN: {
                "goal": goal,
                "steps": steps or ["update"],
                "state": {"status": "deployed"},
                "seed": base64.b64encode(seed).decode(),
            }
        },
    }


# --- the stack file --------------------------------------------------------------------------------------


def stack_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("config: {}\n", "secretsprovider (none)"),
        ("encryptionsalt: v1:abc:v1:def:ghi\nconfig: {}\n", "never a shared passphrase"),
        ("secretsprovider: passphrase\nconfig: {}\n", "never a shared passphrase"),
        ("secretsprovider: awskms://alias/cmm-dev?region=us-west-2\nconfig: {}\n", "no encryptedkey"),
    ],
    ids=["nothing", "passphrase salt", "passphrase", "kms without its key"],
)
def test_a_stack_file_a_preview_would_write_to_is_refused_before_pulumi_runs(tmp_path, text, said):
    """Without it the preview writes a salt or a data key into the file (pulumi
    pkg/cmd/pulumi/stack/secrets.go GetSecretsManager: SecretsManagerMustSave), and the deploy that
    compared the file after the preview refused every plan."""
    problem = plans.stack_file_problem("dev", stack_file(tmp_path, text))
    assert problem is not None and said in problem
    assert "pulumi stack change-secrets-provider --stack dev" in problem and "commit Pulumi.dev.yaml" in problem
    assert plans.main(["stack-file", "--stack", "dev"], root=tmp_path) == 1


def test_a_stack_file_with_its_kms_key_passes(tmp_path):
    root = stack_file(tmp_path, "secretsprovider: awskms://alias/cmm-dev?region=us-west-2\nencryptedkey: AQIC\n")
    assert plans.stack_file_problem("dev", root) is None
    assert plans.main(["stack-file", "--stack", "dev"], root=root) == 0


def test_the_dev_stack_names_its_own_kms_key_and_until_its_key_is_committed_ci_says_what_to_commit():
    """The dev stack ships with its provider; its encryptedkey comes from the operator's first up."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    assert document["secretsprovider"].startswith("awskms://alias/consul-mesh-migration-dev?region=")
    problem = plans.stack_file_problem("dev", ROOT)
    if document.get("encryptedkey"):
        assert problem is None
    else:
        assert problem is not None and "no encryptedkey" in problem and "commit Pulumi.dev.yaml" in problem


# --- the tree ----------------------------------------------------------------------------------------


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}


def commit(repo: Path, message: str) -> None:
    for args in (["add", "."], ["commit", "-qm", message]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    commit(tmp_path, "one")
    return tmp_path


def test_a_plan_is_applied_only_to_the_tree_it_was_made_from(repo, tmp_path_factory):
    """Without it a plan made before main moved was applied to another program (the plan holds no
    commit: pulumi pkg/resource/deploy/plan.go), or refused by comparing a stack file the preview
    had rewritten."""
    reviewed = tmp_path_factory.mktemp("reviewed")
    assert plans.main(["record", "--stack", "dev", "--dir", str(reviewed), "--head", "abc"], root=repo) == 0
    recorded = json.loads((reviewed / "manifest.json").read_text())
    assert recorded["stack"] == "dev" and recorded["head"] == "abc" and len(recorded["tree"]) == 40
    assert plans.main(["verify", "--stack", "dev", "--dir", str(reviewed)], root=repo) == 0

    (repo / "README.md").write_text("main moved\n")
    commit(repo, "two")
    with pytest.raises(PlanError, match="main moved after the preview") as refused:
        plans.verify(recorded, "dev", plans.checkout_tree(repo))
    assert "Run workflow" in str(refused.value) and "Nothing was changed" in str(refused.value)
    assert plans.main(["verify", "--stack", "dev", "--dir", str(reviewed)], root=repo) == 1


def test_a_plan_of_another_stack_or_of_a_changed_checkout_is_refused(repo):
    tree = plans.checkout_tree(repo)
    with pytest.raises(PlanError, match="for stack 'prod'"):
        plans.verify(plans.manifest("prod", tree, "c"), "dev", tree)
    (repo / "Pulumi.dev.yaml").write_text("config: {phase: strict}\n")  # written after the checkout
    with pytest.raises(PlanError, match="differs from its commit"):
        plans.checkout_tree(repo)


# --- a fresh preview against the reviewed plan ---------------------------------------------------------------


def test_a_fresh_preview_that_does_what_was_reviewed_passes():
    """Two previews of the same change differ in time, seed, secret nonces and outputs only."""
    plans.compare(plan(), plan(nonce=b"n2", seed=b"s2"), "dev")
    assert plans.main(["compare", "/nonexistent", "/nonexistent", "--stack", "dev"]) == 1


@pytest.mark.parametrize(
    ("now", "said"),
    [
        (plan(steps=["replace"]), "reviewed update, now replace"),
        (plan(replicas=5), "input values not as reviewed"),
    ],
    ids=["replace instead of update", "other inputs"],
)
def test_a_fresh_preview_that_would_do_otherwise_refuses_before_any_change(now, said):
    """Without it `pulumi up --plan` finds the difference while it applies (pulumi
    pkg/resource/deploy/step_generator.go "violates plan") and stops with half the step done."""
    with pytest.raises(PlanError, match=said) as refused:
        plans.compare(plan(), now, "dev")
    assert "Nothing was changed" in str(refused.value)


def test_a_resource_the_plan_does_not_hold_is_named_one_it_holds_but_leaves_alone_is_not():
    extra = copy.deepcopy(plan())
    extra["resourcePlans"][NEW] = {"goal": {"type": "kubernetes:core/v1:Namespace"}, "steps": ["create"]}
    assert plans.differences(plan(), extra) == [f"{NEW}: create, not in the reviewed plan"]
    assert plans.differences(extra, plan()) == []  # planned, and now nothing to do for it
    deleting = copy.deepcopy(plan())
    deleting["resourcePlans"][NEW] = {"goal": None, "steps": ["delete"]}
    assert plans.differences(plan(), deleting) == [f"{NEW}: delete, not in the reviewed plan"]


def test_a_plan_made_before_an_earlier_queued_deploy_ran_may_now_do_less():
    """A pull request previewed while the deploy of the merge before it still waited holds that
    merge's changes too; once that deploy ran, the fresh preview does only the rest. Pulumi's own
    check allows it (plan.go checkDiff: a planned change already made is a same), so must this one:
    without it every such deploy would be refused and need the stale-plan recovery."""
    reviewed = plan()
    reviewed["resourcePlans"][URN]["goal"]["inputDiff"]["updates"]["version"] = "1.9.2"
    now = plan(nonce=b"n2")  # the values update was deployed by the merge before
    now["resourcePlans"][URN]["goal"]["inputDiff"] = {"updates": {"version": "1.9.2"}}
    assert plans.differences(reviewed, now) == []
    done = plan(steps=["same"])
    done["resourcePlans"][URN]["goal"]["inputDiff"] = {}
    assert plans.differences(reviewed, done) == []
    assert plans.differences(plan(steps=["create-replacement", "replace", "delete-replaced"]), plan()) == []
    now["resourcePlans"][URN]["goal"]["inputDiff"] = {"updates": {"version": "1.9.3"}}  # but not another value
    assert plans.differences(reviewed, now) == [f"{URN}: input version not as reviewed"]


def test_many_differences_are_counted_not_all_printed():
    many: dict[str, Any] = {"resourcePlans": {f"urn:x::{i}": {"steps": ["create"]} for i in range(25)}}
    with pytest.raises(PlanError) as refused:
        plans.compare({"resourcePlans": {}}, many, "dev")
    assert "(25 resource(s))" in str(refused.value) and "and 15 more" in str(refused.value)

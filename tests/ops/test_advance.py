"""`make advance`: one verified step, and the step back when its postcheck fails (ops/advance.py).

A fake stack stands for the Automation API's: it records config changes and the commands run, and
its `up` fails the way Pulumi does when the postcheck Job fails (pulumi-kubernetes' Job await
reports the pod's termination message, which the check's one-line verdict is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from pulumi import automation as auto

from ops.advance import Advance, AdvanceError, main, postcheck_line, stack_config
from tests.conftest import ROOT

PROJECT = "consul-mesh-migration"
FAILED_POSTCHECK = (
    "error: resource urn:...:Job::checks-postcheck was successfully created, but the Kubernetes API server "
    "reported that it failed to fully initialize or become live: Resource 'postcheck-7f2' was created but "
    "failed to initialize\n    * [BackoffLimitExceeded] Job has reached the specified backoff limit\n"
    '    * [Error] postcheck upstreams: expected {"api (mesh)"}, saw {"api (mesh)": 18, "api (non-mesh)": 2}'
)


@dataclass
class FakeStack:
    config: dict[str, str]
    outputs_: dict[str, object]
    fail_ups: list[str] = field(default_factory=list)  # the errors of the next ups, in order
    calls: list[str] = field(default_factory=list)
    name: str = "dev"
    packs: list[list[str] | None] = field(default_factory=list)  # the policy packs of each preview and up

    def get_all_config(self):
        return {k: auto.ConfigValue(value=v) for k, v in self.config.items()}

    def set_config(self, key, value, *, path=False):
        self.config[key] = value.value
        self.calls.append(f"set {key}={value.value}")

    def remove_config(self, key, *, path=False):
        self.config.pop(key, None)

    def preview(self, *, on_output=None, policy_packs=None):
        self.calls.append("preview")
        self.packs.append(policy_packs)

    def up(self, *, on_output=None, policy_packs=None):
        self.calls.append(f"up {self.config[f'{PROJECT}:phase']}")
        self.packs.append(policy_packs)
        if self.fail_ups:
            raise auto.CommandError(auto.CommandResult("", self.fail_ups.pop(0), 1))

    def outputs(self):
        return {k: auto.OutputValue(value=v, secret=False) for k, v in self.outputs_.items()}


def stack(phase: str, deployed: object, **extra: str) -> FakeStack:
    outputs: dict[str, object] = {"phases": deployed} if isinstance(deployed, dict) else {"phase": deployed}
    return FakeStack({f"{PROJECT}:phase": phase, f"{PROJECT}:platform": "kubernetes", **extra}, outputs)


def test_a_single_phase_stack_advances_one_phase_after_a_preview():
    s = stack("strict", "strict")
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "advanced"
    assert s.calls == [f"set {PROJECT}:phase=virtual", "preview", "up virtual"]
    assert "strict -> virtual" in report.text()


def test_a_fleet_advances_one_wave_and_writes_each_service_phase_by_name():
    services = [{"name": "api", "migrates": True}, {"name": "web", "upstreams": ["api"]}, {"name": "slow"}]
    s = stack(
        "permissive",
        {"api": "permissive", "web": "strict", "slow": "discovery"},
        **{f"{PROJECT}:services": json.dumps(services), f"{PROJECT}:phases": json.dumps({"web": "strict"})},
    )
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "advanced"
    # The planner's race-free first wave: web to virtual while api waits at permissive.
    assert s.config[f"{PROJECT}:phase"] == "permissive"
    assert json.loads(s.config[f"{PROJECT}:phases"]) == {"web": "virtual"}
    assert json.loads(s.config[f"{PROJECT}:services"]) == services  # the list is left as it is


def test_a_stack_file_with_phases_in_the_list_moves_them_to_phases_by_name():
    services = [{"name": "api", "migrates": True}, {"name": "web", "upstreams": ["api"], "phase": "strict"}]
    s = stack("permissive", {"api": "permissive", "web": "strict"}, **{f"{PROJECT}:services": json.dumps(services)})
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "advanced"
    assert all("phase" not in e for e in json.loads(s.config[f"{PROJECT}:services"]))
    assert stack_config(s.get_all_config()).target() == report.target


def test_once_every_service_shares_a_phase_the_phases_key_goes():
    held = {f"{PROJECT}:phases": json.dumps({"web": "hardened"})}
    s = stack("virtual", {"api": "virtual", "web": "hardened"}, **held)
    assert Advance(s, say=lambda _: None).run().outcome == "advanced"
    assert s.config[f"{PROJECT}:phase"] == "hardened" and f"{PROJECT}:phases" not in s.config


def test_a_failed_postcheck_steps_back_to_the_last_verified_phase_and_reports_its_line():
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK]
    lines: list[str] = []
    report = Advance(s, say=lines.append).run()
    assert report.outcome == "stepped-back"
    assert s.calls == [
        f"set {PROJECT}:phase=strict",
        "preview",
        "up strict",
        f"set {PROJECT}:phase=permissive",
        "up permissive",
    ]
    assert report.detail.startswith("postcheck upstreams: expected")
    assert "stepped back to permissive" in report.text()
    assert any("stepping back" in line for line in lines)


def test_every_preview_and_up_runs_this_checkouts_policy_pack_the_step_back_too():
    """Without it `make advance` would apply a step the pack forbids (TLS off, an admin policy, an
    open load balancer): the pack ran only in pull-request previews, from the pull request's copy."""
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK]
    Advance(s, say=lambda _: None).run()
    pack = str(ROOT / "policy")
    assert s.packs == [[pack], [pack], [pack]]  # preview, up, step-back up
    assert (ROOT / "policy" / "PulumiPolicy.yaml").exists()


def test_another_failure_stops_without_a_step_back():
    s = stack("permissive", "permissive")
    s.fail_ups = ["error: timed out waiting for the NAT gateway"]
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "failed"
    assert s.calls[-1] == "up strict"
    assert "not on its postcheck" in report.text()


def test_a_failed_step_back_says_what_to_do():
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK, "error: the cluster is unreachable"]
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "step-back-failed"
    assert "run `make up` with those phases" in report.text()


def test_nothing_to_do_once_every_service_is_hardened():
    s = stack("hardened", "hardened")
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "done"
    assert s.calls == []


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({}, "no recorded phases"),
        (
            {
                "phases": {"api": "strict", "web": "strict"},
                "seal-a": {"phases": {"api": "permissive", "web": "permissive"}},
                "seal-b": {"phases": {"api": "strict", "web": "strict"}},
            },
            "did not finish",
        ),
    ],
)
def test_a_stack_without_a_verified_state_is_not_advanced(outputs, message):
    s = FakeStack({f"{PROJECT}:phase": "strict", f"{PROJECT}:platform": "kubernetes"}, outputs)
    with pytest.raises(AdvanceError, match=message):
        Advance(s, say=lambda _: None).run()


def test_the_postcheck_line_is_taken_from_pulumis_error():
    assert postcheck_line(FAILED_POSTCHECK) == (
        'postcheck upstreams: expected {"api (mesh)"}, saw {"api (mesh)": 18, "api (non-mesh)": 2}'
    )
    assert postcheck_line("error: something else") is None


def test_the_command_exits_non_zero_after_a_step_back(capsys):
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK]
    assert main(["--stack", "dev", "--yes"], opener=lambda _: s) == 1
    assert "stepped back to permissive" in capsys.readouterr().out

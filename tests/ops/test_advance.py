"""`make advance`: one verified step, and the step back when its postcheck fails (ops/advance.py).

A fake stack stands for the Automation API's: it records config changes and the commands run, and
its `up` fails the way Pulumi does, with the engine events an `up` of the Automation API hands its
`on_event` callback (pulumi 3.272 sdk/python/lib/pulumi/automation/events.py EngineEvent.from_json,
from the engine's JSON: pkg/apitype/events.go). A failed Job's reasons are built below as
pulumi-kubernetes v4.32.0 writes them and the engine keeps them (the new state's initErrors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from pulumi import automation as auto

from components.checks import postcheck_urn
from ops.advance import Advance, AdvanceError, Failures, main, postcheck_verdict, stack_config
from tests.conftest import ROOT

PROJECT = "consul-mesh-migration"
POSTCHECK = postcheck_urn("dev", PROJECT)
VERDICT = 'postcheck upstreams: expected {"api (mesh)"}, saw {"api (mesh)": 18, "api (non-mesh)": 2} in 20 requests'
JOB, POD = "checks-postcheck-7f2b9c1", "checks-postcheck-7f2b9c1-x8k2p"  # Pulumi's auto-name, the Job controller's


def pod_reason(termination: str, ready_message: str = "") -> str:
    """A Job pod's message, as pulumi-kubernetes' pod checker writes it (await/checker/pod/check.go):
    podError's "[Pod <namespace>/<name>]: ", the Ready condition's message when it has a reason and a
    message, then containerTerminatedError's "[<Reason>] <termination message>", nothing between them.
    A failed pod's Ready condition has the reason PodFailed and no message (kubernetes
    pkg/kubelet/status/generate.go generatePodReadyConditionForTerminalPhase, read at e4b6dc5a); while
    the kubelet still reports it Running with the container terminated, ContainersNotReady says
    "containers with unready status: [<container>]"."""
    return f"[Pod mesh-checks/{POD}]: {ready_message}[Error] {termination}"


def job_failed(urn: str, line: str | None, op: str = "create", ready_message: str = "") -> list[dict]:
    """The events of a Job whose pod exited with `line` as its termination message (None: a Job past its
    deadline, whose pod never ended on its own: pulumi-kubernetes reports the Job's condition only).

    The reasons are partialError's (provider/pkg/provider/provider.go): the wrapped await error first,
    then the awaiter's messages in the order it met them (await/job.go errorMessages): the pod's while it
    started, its own at the end, the Job's Failed condition (checker/job/check.go "[<Reason>] <message>",
    the message the Job controller writes). The engine's diagnostic is the same reasons as the
    provider plugin's InitError prints them (hashicorp/go-multierror ListFormatFunc)."""
    started = pod_reason("", "containers with unready status: [postcheck]").removesuffix("[Error] ")
    ended = (
        [pod_reason(line, ready_message), "[BackoffLimitExceeded] Job has reached the specified backoff limit"]
        if line
        else ["[DeadlineExceeded] Job was active longer than specified deadline"]
    )
    reasons = [
        f'resource "{urn}" was successfully created, but the Kubernetes API server reported that it failed to '
        f"fully initialize or become live: Resource '{JOB}' was created but failed to initialize",
        started,
        *ended,
    ]
    message = f"{len(reasons)} errors occurred:\n\t" + "\n\t".join(f"* {r}" for r in reasons) + "\n\n"
    return [
        {"sequence": 7, "diagnosticEvent": {"urn": urn, "message": message, "severity": "error", "color": "never"}},
        {
            "sequence": 8,
            "resOpFailedEvent": {
                "metadata": {
                    "op": op,
                    "urn": urn,
                    "type": "kubernetes:batch/v1:Job",
                    "provider": "",
                    "new": {"type": "kubernetes:batch/v1:Job", "urn": urn, "initErrors": reasons},
                },
                "status": 1,
                "steps": 1,
            },
        },
    ]


def delete_failed(urn: str, message: str) -> list[dict]:
    return [
        {"sequence": 3, "diagnosticEvent": {"urn": urn, "message": message, "severity": "error", "color": "never"}},
        {
            "sequence": 4,
            "resOpFailedEvent": {
                "metadata": {"op": "delete", "urn": urn, "type": "kubernetes:apps/v1:Deployment", "provider": ""},
                "status": 1,
                "steps": 1,
            },
        },
    ]


FAILED_POSTCHECK = job_failed(POSTCHECK, VERDICT)


@dataclass
class FakeStack:
    config: dict[str, str]
    outputs_: dict[str, object]
    fail_ups: list[list[dict]] = field(default_factory=list)  # the engine events of the next failing ups
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

    def up(self, *, on_output=None, on_event=None, policy_packs=None):
        self.calls.append(f"up {self.config[f'{PROJECT}:phase']}")
        self.packs.append(policy_packs)
        if self.fail_ups:
            events = [auto.EngineEvent.from_json(e) for e in self.fail_ups.pop(0)]
            for event in events:
                if on_event is not None:
                    on_event(event)
            text = "\n".join(e.diagnostic_event.message for e in events if e.diagnostic_event)
            raise auto.CommandError(auto.CommandResult("", text, 1))

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
    assert report.detail == VERDICT
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


NAT = "urn:pulumi:dev::consul-mesh-migration::aws:ec2/natGateway:NatGateway::network-nat-0"
V1 = (
    "urn:pulumi:dev::consul-mesh-migration::consul-mesh-migration:services:DemoServices"
    "$kubernetes:apps/v1:Deployment::services-api-v1"
)


@pytest.mark.parametrize(
    ("events", "why"),
    [
        (delete_failed(NAT, "timed out waiting for the NAT gateway"), "another resource failed"),
        # The postcheck passed; a delete after it failed: the step stays, with two seals (migration/guard.py).
        (delete_failed(V1, 'deleting "api-v1": context deadline exceeded'), "a delete failed after the postcheck"),
        # The check could not run (exit 2): no verdict on the step.
        (
            job_failed(POSTCHECK, "cannot check: postcheck kubernetes: listing the pods app=api in api failed"),
            "no verdict",
        ),
        # The Job never ran its script to the end (the image, the node): its deadline passed.
        (job_failed(POSTCHECK, None), "past its deadline"),
        # Another Job's failure that mentions the postcheck in its text is not the postcheck's.
        (
            job_failed(POSTCHECK.replace("checks-postcheck", "checks-precheck"), VERDICT.replace("post", "pre")),
            "the precheck",
        ),
    ],
)
def test_anything_but_the_postchecks_own_verdict_stops_without_a_step_back(events, why):
    s = stack("permissive", "permissive")
    s.fail_ups = [events]
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "failed", why
    assert s.calls[-1] == "up strict"
    assert "not on its postcheck's verdict" in report.text()


def test_a_failed_step_back_says_what_to_do():
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK, delete_failed(NAT, "the cluster is unreachable")]
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "step-back-failed"
    assert "run `make up` with those phases" in report.text()


def test_nothing_to_do_once_every_service_is_hardened():
    s = stack("hardened", "hardened")
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "done"
    assert s.calls == []


def test_a_stack_without_recorded_phases_is_not_advanced():
    s = FakeStack({f"{PROJECT}:phase": "strict", f"{PROJECT}:platform": "kubernetes"}, {})
    with pytest.raises(AdvanceError, match="no recorded phases"):
        Advance(s, say=lambda _: None).run()


def test_an_up_that_did_not_finish_is_re_run_and_nothing_else():
    """Two seals: the postcheck passed and the phases were recorded, a delete failed after it. The guard
    allows only that step again (or the one before), and Pulumi retries the deletes."""
    outputs = {
        "phases": {"api": "strict", "web": "strict"},
        "seal-a": {"phases": {"api": "permissive", "web": "permissive"}},
        "seal-b": {"phases": {"api": "strict", "web": "strict"}},
    }
    s = FakeStack({f"{PROJECT}:phase": "permissive", f"{PROJECT}:platform": "kubernetes"}, outputs)
    report = Advance(s, say=lambda _: None).run()
    assert report.outcome == "finished"
    assert s.calls == [f"set {PROJECT}:phase=strict", "up strict"]
    assert "had not finished: re-ran it" in report.text()


@pytest.mark.parametrize("ready_message", ["", "containers with unready status: [postcheck]"])
@pytest.mark.parametrize("kept", ["initErrors", "diagnostic"])
def test_the_verdict_is_the_postcheck_jobs_own_line(ready_message, kept):
    """Found in the reason pulumi-kubernetes writes for the pod, after its "[Pod ...]: " and whatever
    the Ready condition says, in the new state's initErrors or in the engine's diagnostic alone."""
    events = job_failed(POSTCHECK, VERDICT, ready_message=ready_message)
    if kept == "diagnostic":
        del events[1]["resOpFailedEvent"]["metadata"]["new"]
    failures = Failures()
    for e in events:
        failures(auto.EngineEvent.from_json(e))
    assert postcheck_verdict(failures, POSTCHECK) == VERDICT
    assert postcheck_verdict(failures, POSTCHECK.replace("post", "pre")) is None


def test_the_command_exits_non_zero_after_a_step_back(capsys):
    s = stack("permissive", "permissive")
    s.fail_ups = [FAILED_POSTCHECK]
    assert main(["--stack", "dev", "--yes"], opener=lambda _: s) == 1
    assert "stepped back to permissive" in capsys.readouterr().out

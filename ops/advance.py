"""`make advance`: one verified step of the rollout, and a step back when the step's postcheck fails.

    python -m ops.advance [--stack dev] [--yes]

1. Reads the stack's config and the phases it last recorded (`phases`, written only once a step's
   postcheck passed, so they are the last verified state).
2. Picks the next step: the planner's next wave (migration/plan.py); for a stack whose services
   share one phase, that is the next phase.
3. Sets the config for it, previews, and runs one `pulumi up`, printing Pulumi's progress.
4. When the `up` fails on its postcheck's own verdict, sets the config back to the last verified
   phases and runs `up` again: Pulumi restores that step's objects (deleting what the failed step
   created), and the guard allows it because it is the recorded step. Then it reports what happened.

"Its own verdict" is read from the Automation API's engine events, not from the `up`'s text: a
ResOpFailedEvent whose resource is the postcheck Job (pulumi sdk/python automation/events.py), and
among that Job's reasons (pulumi-kubernetes' await: the pod's termination message, "[Pod
<namespace>/<pod>]: [Error] <line>") the script's verdict line, `postcheck <part>: ...`
(meshcheck/mesh_check.py exits 1 with it). A check
that could not run (`cannot check: ...`), a Job past its deadline, a failed delete or any other
resource: no step back, since the cause may be the cloud, not the step, and a second `up` would not
help. A stack whose last `up` did not finish (two seals, migration/guard.py) gets that `up` re-run,
as the guard asks, and nothing else.

The logic (class Advance) takes a stack object so tests give it a fake; `main` wires the Automation
API on the real CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto

from components.checks import postcheck_urn
from migration.fleet import Fleet
from migration.guard import read_deployed
from migration.phases import Phase, describe
from migration.plan import plan
from ops.workspace import WorkspaceError, open_workspace
from program.config import PROJECT, StackConfig, parse_config, project_keys

ROOT = Path(__file__).resolve().parent.parent
# The policy pack of this checkout (the tree being deployed) holds every preview and up, the step back too.
POLICY_PACK = ROOT / "policy"


class AdvanceError(Exception):
    """The step cannot go ahead; the message says why and what to do."""


class AdvanceStack(Protocol):
    """The part of `pulumi.automation.Stack` the tool uses."""

    @property
    def name(self) -> str: ...
    def get_all_config(self) -> Mapping[str, auto.ConfigValue]: ...
    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None: ...
    def remove_config(self, key: str, *, path: bool = False) -> None: ...
    def preview(
        self, *, on_output: Callable[[str], Any] | None = None, policy_packs: list[str] | None = None
    ) -> object: ...
    def up(
        self,
        *,
        on_output: Callable[[str], Any] | None = None,
        on_event: Callable[[auto.EngineEvent], Any] | None = None,
        policy_packs: list[str] | None = None,
    ) -> object: ...
    def outputs(self) -> Mapping[str, auto.OutputValue]: ...


def stack_config(values: Mapping[str, auto.ConfigValue]) -> StackConfig:
    """The project's config as the program reads it."""
    return parse_config(project_keys({key: value.value for key, value in values.items()}))


@dataclass(frozen=True)
class Report:
    before: dict[str, Phase]  # the last verified phases
    target: dict[str, Phase] | None  # None: nothing left to do
    outcome: str  # advanced, done, stepped-back, failed, step-back-failed, finished
    detail: str = ""

    def text(self) -> str:
        if self.target is None:
            return f"nothing to advance: every service is at {describe(self.before)}"
        step = f"{describe(self.before)} -> {describe(self.target)}"
        return {
            "advanced": f"advanced: {step}; the postcheck passed and the stack recorded it",
            "stepped-back": (
                f"the postcheck failed on {step}:\n  {self.detail}\nstepped back to {describe(self.before)}"
            ),
            "step-back-failed": (
                f"the postcheck failed on {step}:\n  {self.detail}\nand the step back to {describe(self.before)} "
                "failed too: fix the cause, then run `make up` with those phases"
            ),
            "failed": f"the step {step} failed (not on its postcheck's verdict; no step back):\n  {self.detail}",
            "finished": (
                f"the last `up` ({step}) had not finished: re-ran it, and Pulumi finished what it had left; "
                "run `make advance` again for the next step"
            ),
        }[self.outcome]


@dataclass
class Failures:
    """What the engine events of one `up` say failed: per resource URN, its operation and its reasons
    (the new state's init errors, then its error diagnostics)."""

    operations: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    last_error: str = ""

    def __call__(self, event: auto.EngineEvent) -> None:
        failed, diagnostic = event.res_op_failed_event, event.diagnostic_event
        if failed is not None:
            meta = failed.metadata
            self.operations[meta.urn] = meta.op.value
            if meta.new is not None and meta.new.init_errors:
                self.reasons.setdefault(meta.urn, []).extend(meta.new.init_errors)
        if diagnostic is not None and diagnostic.severity == "error":
            self.last_error = diagnostic.message.strip() or self.last_error
            if diagnostic.urn:
                self.reasons.setdefault(diagnostic.urn, []).append(diagnostic.message)


# The script's verdict as the pod's termination message reaches the Job's reasons (pulumi-kubernetes
# v4.32.0 await/checker/pod/check.go): podError writes "[Pod <namespace>/<pod>]: " and the Ready
# condition's message, if any, then containerTerminatedError "[<Reason>] <termination message>", with
# no separator between them. So the line is found after its "[Error] ", wherever that is in the reason.
_VERDICT = re.compile(r"\[\w+\] (postcheck[\w -]*: .*)$")


def postcheck_verdict(failures: Failures, urn: str) -> str | None:
    """The postcheck's own one-line verdict when its Job is what failed; None otherwise."""
    if urn not in failures.operations:
        return None
    for reason in failures.reasons.get(urn, []):
        for line in reason.splitlines():
            if m := _VERDICT.search(line.strip()):
                return m.group(1)
    return None


@dataclass
class Advance:
    stack: AdvanceStack
    say: Callable[[str], Any] = print
    assume_yes: bool = True
    confirm: Callable[[str], bool] = field(default=lambda question: input(f"{question} [y/N] ").lower() == "y")
    policy_packs: Sequence[Path] = (POLICY_PACK,)

    def select(self, cfg: StackConfig, phases: Mapping[str, Phase]) -> None:
        """Set the stack config so the program selects `phases` (StackConfig.selecting): the stack
        `phase`, and each service ahead of it under `phases.<name>` (the key goes when none is)."""
        present = self.stack.get_all_config()
        for key, value in cfg.selecting(phases).items():
            if value == {}:
                if f"{PROJECT}:{key}" in present:
                    self.stack.remove_config(f"{PROJECT}:{key}")
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            self.stack.set_config(f"{PROJECT}:{key}", auto.ConfigValue(value=text))

    def _packs(self) -> list[str]:
        return [str(pack) for pack in self.policy_packs]

    def run(self) -> Report:
        cfg = stack_config(self.stack.get_all_config())
        fleet: Fleet = cfg.fleet()
        outputs = {k: v.value for k, v in self.stack.outputs().items()}
        deployed = read_deployed(outputs, fleet.names)
        if deployed.phases is None:
            raise AdvanceError(f"{self.stack.name} has no recorded phases yet: run `make up` for its first step")
        if deployed.unfinished_from is not None:
            return self.finish(cfg, deployed.unfinished_from, deployed.phases)
        before = {n: deployed.phases.get(n, cfg.target()[n]) for n in fleet.names}
        waves = plan(fleet, before).waves
        if not waves:
            return Report(before, None, "done")
        target = waves[0]
        self.say(f"{self.stack.name}: {describe(before)} -> {describe(target)}")
        self.select(cfg, target)
        self.say("preview:")
        self.stack.preview(on_output=self.say, policy_packs=self._packs())
        if not self.assume_yes and not self.confirm("run this `pulumi up`?"):
            self.select(cfg, before)
            raise AdvanceError("not confirmed; the config is back at the last verified phases")
        failures = Failures()
        try:
            self.stack.up(on_output=self.say, on_event=failures, policy_packs=self._packs())
        except auto.CommandError as e:
            line = postcheck_verdict(failures, postcheck_urn(self.stack.name, PROJECT))
            if line is None:
                return Report(before, target, "failed", failures.last_error or _last_line(str(e)))
            self.say(f"postcheck failed: {line}\nstepping back to {describe(before)}")
            self.select(cfg, before)
            try:
                self.stack.up(on_output=self.say, policy_packs=self._packs())
            except auto.CommandError as back:
                return Report(before, target, "step-back-failed", f"{line}\n  step back: {_last_line(str(back))}")
            return Report(before, target, "stepped-back", line)
        return Report(before, target, "advanced")

    def finish(self, cfg: StackConfig, before: Mapping[str, Phase], phases: Mapping[str, Phase]) -> Report:
        """Re-run the `up` that did not finish (its phases are the recorded ones): Pulumi retries what is
        left, the deletes of what the step retires."""
        b, t = dict(before), dict(phases)
        self.say(f"{self.stack.name}: the last `up` ({describe(b)} -> {describe(t)}) did not finish; re-running it")
        self.select(cfg, t)
        failures = Failures()
        try:
            self.stack.up(on_output=self.say, on_event=failures, policy_packs=self._packs())
        except auto.CommandError as e:
            return Report(b, t, "failed", failures.last_error or _last_line(str(e)))
        return Report(b, t, "finished")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def open_stack(name: str, root: Path = ROOT, env: Mapping[str, str] = os.environ) -> AdvanceStack:
    """The stack in the one workspace the commands share (ops/workspace.py)."""
    try:
        return auto.Stack.select(name, open_workspace(root, env))
    except WorkspaceError as e:
        raise AdvanceError(str(e)) from e


def main(argv: Sequence[str] | None = None, opener: Callable[[str], AdvanceStack] = open_stack) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.advance", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--yes", action="store_true", help="run the `up` without asking after the preview")
    args = parser.parse_args(argv)
    try:
        report = Advance(opener(args.stack), assume_yes=args.yes).run()
    except (AdvanceError, auto.CommandError) as e:
        print(f"advance: {e}", file=sys.stderr)
        return 1
    print(report.text())
    return 0 if report.outcome in ("advanced", "done") else 1


if __name__ == "__main__":
    sys.exit(main())

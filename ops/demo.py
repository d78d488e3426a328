"""Ephemeral demo environments: one Pulumi stack per demo, driven by the Automation API.

    python -m ops.demo create [--name N] [--like dev|local] [--phase P] [--region R] [--context C] [--ttl 8h]
    python -m ops.demo advance [--name N]     one phase forward; prints the gateway URL and what to check
    python -m ops.demo list                   demo stacks with their phase, age and expiry
    python -m ops.demo destroy [--name N] [--force]
    python -m ops.demo reap [--dry-run]       destroy every demo whose time-to-live has run out
    python -m ops.demo pr-up --pr N [--outputs FILE]    the demo of pull request N: create, or bring up to date
    python -m ops.demo pr-down --pr N                   destroy the demo of pull request N, if there is one

A demo is the stack `demo-<name>` (the name defaults to the git branch), configured like the `dev`
(EKS) or `local` (kind) stack, with `cluster.protect` off so that destroy can delete the cluster.
Its creation time and expiry are stack tags, so `reap` works from any machine that shares the backend.
A demo like `dev` runs its EKS nodes on spot capacity (`cluster.capacityType: SPOT`) unless --on-demand.

Pull-request demos (.github/workflows/demo.yml) are `demo-pr-<N>`: `pr-up` creates one at the
phase the pull request's stack file names; run again, it applies the pull request's program and
stack file to it (a phase change there moves the demo too, one phase at a time as the guard allows)
and counts the time-to-live again from now.
State goes to $PULUMI_BACKEND_URL, or to the local file backend <repo>/.pulumi-state as with `make up`.

The logic (class Demos) takes a workspace and a stack opener, so tests give it fakes; `main` wires
the real `pulumi.automation` LocalWorkspace, which needs the Pulumi CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml
from pulumi import automation as auto

from migration.phases import PHASE_NAMES, Phase
from ops.backend import backend_url, in_ci, is_local, remote_state_advice
from ops.workspace import WorkspaceError, open_workspace
from policy.rules import state_nodes, teardown_order
from program.config import PROJECT

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "demo-"
MAX_NAME = 40  # short enough to read in `list`; long names keep a hash of the full name
TAG_CREATED = "demo:created"
TAG_EXPIRES = "demo:expires"
DEFAULT_TTL = "8h"
PR_TTL = "24h"  # a pull request's demo lives this long after its last push
SPOT = "SPOT"  # cluster.capacityType of a demo's EKS nodes unless --on-demand
TEMPLATES = ("dev", "local")  # the stack files a demo copies its config from
COPIED_NOT = ("access", "adminRoleArns")  # the like stack's principals; see demo_config
BOUNDARY_VARIABLE = "DEMO_PERMISSIONS_BOUNDARY_ARN"


class DemoError(Exception):
    """A demo operation that cannot go ahead; the message says why and what to do."""


class DemoStack(Protocol):
    """The part of `pulumi.automation.Stack` the tool uses."""

    @property
    def name(self) -> str: ...
    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def up(self, *, on_output: Callable[[str], Any] | None = None, policy_packs: list[str] | None = None) -> object: ...
    def refresh(self, *, on_output: Callable[[str], Any] | None = None) -> object: ...
    def destroy(self, *, on_output: Callable[[str], Any] | None = None) -> object: ...
    def outputs(self) -> Mapping[str, auto.OutputValue]: ...
    def export_stack(self) -> auto.Deployment: ...


class DemoWorkspace(Protocol):
    """The part of `pulumi.automation.LocalWorkspace` the tool uses."""

    def list_stacks(self) -> Sequence[auto.StackSummary]: ...
    def list_tags(self, stack_name: str) -> Mapping[str, str]: ...
    def stack_outputs(self, stack_name: str) -> Mapping[str, auto.OutputValue]: ...
    def remove_stack(self, stack_name: str) -> None: ...


# --- names, times, config ---------------------------------------------------------------------------


def demo_stack_name(raw: str) -> str:
    """`demo-<slug>`: lowercase letters, digits and '-'; a long name is cut and keeps a hash of the whole."""
    slug = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-").removeprefix(PREFIX)
    if not slug:
        raise DemoError(f"demo name {raw!r} has no letters or digits; give one with --name")
    name = PREFIX + slug
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:6]
        name = f"{name[: MAX_NAME - 7].rstrip('-')}-{digest}"
    return name


def git_branch(root: Path = ROOT) -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    branch = result.stdout.strip()
    if result.returncode != 0 or not branch or branch == "HEAD":
        raise DemoError("no git branch to name the demo after (detached HEAD or not a repository); give --name")
    return branch


def parse_ttl(text: str) -> timedelta:
    """'90m', '8h', '2d', '1d12h' -> timedelta."""
    match = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", text.strip())
    if not text.strip() or not match:
        raise DemoError(f"ttl {text!r}: give days, hours and/or minutes, such as 90m, 8h, 2d or 1d12h")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    ttl = timedelta(days=days, hours=hours, minutes=minutes)
    if ttl <= timedelta(0):
        raise DemoError(f"ttl {text!r} must be longer than zero")
    return ttl


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def format_duration(d: timedelta) -> str:
    minutes = max(0, int(d.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _flatten(key: str, value: Any) -> list[tuple[str, str, bool]]:
    """A config value as `pulumi config set [--path]` calls: (key, text, path)."""
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in _flatten(f"{key}.{k}", v)]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _flatten(f"{key}[{i}]", v)]
    text = json.dumps(value) if isinstance(value, bool | int | float) else str(value)
    return [(key, text, "." in key.split(":", 1)[-1] or "[" in key)]


def _like_config(like: str, root: Path) -> dict[str, Any]:
    if like not in TEMPLATES:
        raise DemoError(f"--like {like!r}: allowed: {', '.join(TEMPLATES)}")
    return dict((yaml.safe_load((root / f"Pulumi.{like}.yaml").read_text()) or {}).get("config") or {})


def like_phase(like: str, root: Path = ROOT) -> Phase:
    """The phase the `like` stack's file names (discovery when it names none)."""
    phase = _like_config(like, root).get(f"{PROJECT}:phase", Phase.DISCOVERY.value)
    if phase not in PHASE_NAMES:
        raise DemoError(f"Pulumi.{like}.yaml: phase {phase!r}: allowed: {', '.join(PHASE_NAMES)}")
    return Phase(phase)


def demo_config(
    like: str,
    phase: Phase,
    region: str | None = None,
    context: str | None = None,
    root: Path = ROOT,
    *,
    on_demand: bool = False,
    boundary: str | None = None,
) -> list[tuple[str, str, bool]]:
    """The config of a new demo: the `like` stack's file, at `phase`, unprotected so destroy can finish.

    A demo like `dev` runs its nodes on spot capacity, at a fraction of the on-demand price, unless
    `on_demand`: a demo lives for hours and can take the loss of a node.

    The `like` stack's cluster access (its CI roles) is not copied: whoever creates the demo (the
    demo role in CI) is its cluster admin through EKS's creator entry, which the program keeps when
    `cluster.access` is empty; with the dev stack's list, the demo role would be locked out of its
    own cluster. `boundary` (DEMO_PERMISSIONS_BOUNDARY_ARN) goes to cluster.permissionsBoundaryArn:
    the demo role may create only roles with that boundary (docs/reference/security.md).
    """
    config = _like_config(like, root)
    config[f"{PROJECT}:phase"] = phase.value
    cluster = dict(config.get(f"{PROJECT}:cluster") or {})
    for key in COPIED_NOT:
        cluster.pop(key, None)
    if boundary:
        cluster["permissionsBoundaryArn"] = boundary
    cluster["protect"] = False  # a demo is meant to be destroyed; protect guards long-lived stacks
    if like == "dev" and not on_demand:
        cluster["capacityType"] = SPOT
    if context:
        cluster["context"] = context
    config[f"{PROJECT}:cluster"] = cluster
    if region:
        config["aws:region"] = region
    return [item for key, value in config.items() for item in _flatten(key, value)]


def pr_demo_name(number: int) -> str:
    """A pull request's demo name: stable across pushes, so each push updates the same stack."""
    if number <= 0:
        raise DemoError(f"pull request number {number}: must be a positive integer")
    return f"pr-{number}"


def public_outputs(outputs: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Stack outputs fit to post on a pull request: every one not marked secret."""
    return {key: out.value for key, out in sorted(outputs.items()) if not out.secret}


# --- the operations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    name: str
    phase: str | None
    created: datetime | None
    expires: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now


def _value(outputs: Mapping[str, auto.OutputValue], key: str) -> Any:
    out = outputs.get(key)
    return out.value if out is not None else None


@dataclass
class Demos:
    workspace: DemoWorkspace
    open_stack: Callable[[str, bool], DemoStack]  # (name, create) -> stack
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    say: Callable[[str], Any] = print
    branch: Callable[[], str] = git_branch
    root: Path = ROOT  # where the stack files a demo copies are
    # The policy pack every demo up runs; in CI the base branch's (demo.yml), never the pull request's.
    policy_pack: Path = ROOT / "policy"
    permissions_boundary: str | None = None  # cluster.permissionsBoundaryArn of every demo (see demo_config)

    def resolve(self, name: str | None) -> str:
        return demo_stack_name(name if name else self.branch())

    def names(self) -> list[str]:
        names = (s.name.rsplit("/", 1)[-1] for s in self.workspace.list_stacks())
        return sorted(n for n in names if n.startswith(PREFIX))

    def _existing(self, name: str | None) -> DemoStack:
        stack_name = self.resolve(name)
        if stack_name not in self.names():
            raise DemoError(f"no demo stack {stack_name}; `list` shows the demos, `create` makes one")
        return self.open_stack(stack_name, False)

    def create(
        self,
        name: str | None = None,
        *,
        like: str = "dev",
        phase: Phase = Phase.DISCOVERY,
        region: str | None = None,
        context: str | None = None,
        ttl: timedelta | None = None,
        on_demand: bool = False,
    ) -> Mapping[str, auto.OutputValue]:
        ttl = ttl or parse_ttl(DEFAULT_TTL)
        stack_name = self.resolve(name)
        if stack_name in self.names():
            raise DemoError(f"{stack_name} exists already: `advance` it, or `destroy` it first")
        config = demo_config(
            like, phase, region, context, self.root, on_demand=on_demand, boundary=self.permissions_boundary
        )
        stack = self.open_stack(stack_name, True)
        # Tags first: a demo whose first `up` fails still expires and is reaped.
        created = self.now()
        stack.set_tag(TAG_CREATED, _stamp(created))
        stack.set_tag(TAG_EXPIRES, _stamp(created + ttl))
        self.say(f"{stack_name}: like {like}, phase {phase.value}, expires {_stamp(created + ttl)}")
        return self._up(stack, config)

    def _up(self, stack: DemoStack, config: Iterable[tuple[str, str, bool]]) -> Mapping[str, auto.OutputValue]:
        for key, text, path in config:
            stack.set_config(key, auto.ConfigValue(value=text), path=path)
        stack.up(on_output=self.say, policy_packs=[str(self.policy_pack)])
        outputs = stack.outputs()
        self._report(stack.name, outputs)
        return outputs

    def pr_up(
        self,
        number: int,
        *,
        like: str = "dev",
        region: str | None = None,
        ttl: timedelta | None = None,
        on_demand: bool = False,
    ) -> Mapping[str, auto.OutputValue]:
        """The demo of pull request `number`, at the phase the checked-out `like` stack file names.

        A new demo is created; an existing one gets the checked-out program and stack file, so a
        push that changes the phase moves the demo with it (the program's guard allows one phase
        per `up`, as on the real stack), and its time-to-live counts again from now.
        """
        ttl = ttl or parse_ttl(PR_TTL)
        name, phase = pr_demo_name(number), like_phase(like, self.root)
        stack_name = self.resolve(name)
        if stack_name not in self.names():
            return self.create(name, like=like, phase=phase, region=region, ttl=ttl, on_demand=on_demand)
        stack = self.open_stack(stack_name, False)
        expires = self.now() + ttl
        stack.set_tag(TAG_EXPIRES, _stamp(expires))
        self.say(f"{stack_name}: the pull request's program at phase {phase.value}, expires {_stamp(expires)}")
        config = demo_config(
            like, phase, region, root=self.root, on_demand=on_demand, boundary=self.permissions_boundary
        )
        return self._up(stack, config)

    def pr_down(self, number: int) -> None:
        """Destroy the demo of pull request `number`; none is no error (the label may come off twice)."""
        stack_name = self.resolve(pr_demo_name(number))
        if stack_name not in self.names():
            self.say(f"{stack_name}: no such demo, nothing to destroy")
            return
        self.destroy(stack_name)

    def advance(self, name: str | None = None) -> Phase:
        """One phase forward from the deployed phase; the program's guard checks the step again."""
        stack = self._existing(name)
        deployed = _value(stack.outputs(), "phase")
        if deployed not in PHASE_NAMES:
            raise DemoError(f"{stack.name} reports no deployed phase ({deployed!r}); destroy it and create it again")
        following = Phase(deployed).next
        if following is None:
            raise DemoError(f"{stack.name} is at {deployed}, the last phase; `destroy` it when the demo is over")
        self.say(f"{stack.name}: {deployed} -> {following.value}")
        self._up(stack, [(f"{PROJECT}:phase", following.value, False)])
        return following

    def _report(self, stack_name: str, outputs: Mapping[str, auto.OutputValue]) -> None:
        phase, following = _value(outputs, "phase"), _value(outputs, "nextPhase")
        self.say(f"{stack_name} is at phase {phase}" + (f"; next: {following}" if following else "; the last phase"))
        url = _value(outputs, "gatewayUrl") or (
            "no load balancer address (on kind: kubectl port-forward svc/api-gateway -n consul 8080:80, "
            "then http://localhost:8080)"
        )
        self.say(f"gateway: {url}")
        verify = _value(outputs, "verify")
        if verify:
            text = verify if isinstance(verify, str) else json.dumps(verify, indent=2)
            self.say(f"verify before advancing:\n{text}")

    def list_demos(self) -> list[Demo]:
        demos = []
        for name in self.names():
            tags = self.workspace.list_tags(name)
            phase = _value(self.workspace.stack_outputs(name), "phase")
            demos.append(Demo(name, phase, _parse_stamp(tags.get(TAG_CREATED)), _parse_stamp(tags.get(TAG_EXPIRES))))
        return demos

    def table(self, demos: Iterable[Demo]) -> str:
        now = self.now()
        rows = [("NAME", "PHASE", "AGE", "EXPIRES")]
        for d in demos:
            age = format_duration(now - d.created) if d.created else "?"
            if d.expires is None:
                expires = "never (no ttl tag)"
            elif d.expired(now):
                expires = f"expired {format_duration(now - d.expires)} ago"
            else:
                expires = f"in {format_duration(d.expires - now)}"
            rows.append((d.name, d.phase or "-", age, expires))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows)

    def destroy(self, name: str | None = None, *, force: bool = False) -> None:
        """Refresh, check the teardown order, destroy every resource, then remove the stack.

        The stack goes only after its resources: a failed destroy keeps the state, so running
        `destroy` again picks up where it stopped instead of leaving cloud resources untracked.
        """
        stack = self._existing(name)
        stack.refresh(on_output=self.say)  # what was deleted or changed outside Pulumi, so destroy does not trip on it
        deployment = stack.export_stack().deployment or {}
        problems = [v.message for v in teardown_order(state_nodes(deployment.get("resources") or []))]
        if problems and not force:
            raise DemoError(
                f"{stack.name}: destroy could orphan load balancers:\n  "
                + "\n  ".join(problems)
                + "\nFix the program's dependencies, or pass --force and check the AWS console afterwards."
            )
        for problem in problems:
            self.say(f"warning: {problem}")
        stack.destroy(on_output=self.say)
        self.workspace.remove_stack(stack.name)
        self.say(f"{stack.name}: destroyed and removed")

    def reap(self, *, dry_run: bool = False) -> list[str]:
        """Destroy every expired demo; one failure does not stop the others. Returns the failures."""
        now = self.now()
        expired = [d for d in self.list_demos() if d.expired(now)]
        failed = []
        for d in expired:
            self.say(f"{d.name}: expired {format_duration(now - d.expires)} ago" if d.expires else d.name)
            if dry_run:
                continue
            try:
                self.destroy(d.name)
            except Exception as e:  # reaping goes on; the failure is reported at the end
                self.say(f"{d.name}: not reaped: {e}")
                failed.append(d.name)
        if not expired:
            self.say("no expired demo")
        return failed


# --- the real backend ----------------------------------------------------------------------------------


def local_demos(root: Path = ROOT, env: Mapping[str, str] = os.environ) -> Demos:
    """Demos on the Pulumi CLI: state in $PULUMI_BACKEND_URL or <repo>/.pulumi-state."""
    url = backend_url(env, root)
    if in_ci(env) and is_local(url):
        # The runner's disk goes with the job: the next push could not find the demo, nor the reaper.
        raise DemoError(
            f"in CI a demo needs a remote state backend, not {url}: set the environment `demo`'s variable "
            f"DEMO_BACKEND_URL (PULUMI_BACKEND_URL here); {remote_state_advice()}"
        )
    if is_local(url):
        Path(url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    # Self-managed backends (file, s3, gs, azblob, postgres) encrypt secrets with a passphrase by default.
    passphrase = env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if not url.startswith("https://") and not passphrase:
        raise DemoError(f"{url} encrypts stack secrets with a passphrase: set PULUMI_CONFIG_PASSPHRASE first")
    try:
        workspace = open_workspace(root, env)
    except WorkspaceError as e:
        raise DemoError(str(e)) from e

    def open_stack(name: str, create: bool) -> DemoStack:
        return auto.Stack.create(name, workspace) if create else auto.Stack.select(name, workspace)

    return Demos(workspace=workspace, open_stack=open_stack, permissions_boundary=env.get(BOUNDARY_VARIABLE) or None)


def main(argv: Sequence[str] | None = None, demos: Callable[[], Demos] = local_demos) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.demo", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a demo stack and bring it up at a phase")
    create.add_argument("--name", help="demo name (default: the git branch); the stack is demo-<name>")
    create.add_argument("--like", choices=TEMPLATES, default="dev", help="copy the config of this stack")
    create.add_argument("--phase", choices=PHASE_NAMES, default=Phase.DISCOVERY.value)
    create.add_argument("--region", help="AWS region (like dev)")
    create.add_argument("--context", help="kubeconfig context (like local)")
    create.add_argument("--ttl", default=DEFAULT_TTL, help="time to live, such as 90m, 8h or 2d (default %(default)s)")
    pr_up = sub.add_parser("pr-up", help="create the demo of a pull request, or bring it up to date")
    pr_down = sub.add_parser("pr-down", help="destroy the demo of a pull request, if there is one")
    for p in (pr_up, pr_down):
        p.add_argument("--pr", type=int, required=True, help="pull request number; the stack is demo-pr-<N>")
    pr_up.add_argument("--like", choices=TEMPLATES, default="dev", help="the stack file the pull request changes")
    pr_up.add_argument("--region", help="AWS region (like dev)")
    pr_up.add_argument("--ttl", default=PR_TTL, help="time to live after this push (default %(default)s)")
    pr_up.add_argument("--outputs", type=Path, help="write the stack outputs that are not secret here, as JSON")
    for p in (create, pr_up):
        p.add_argument("--on-demand", action="store_true", help="like dev: on-demand nodes instead of spot")
        p.add_argument(
            "--policy-pack", type=Path, help="the policy pack the up runs (default: this checkout's policy/)"
        )
    for command, text in (("advance", "move a demo one phase forward"), ("destroy", "destroy a demo and its stack")):
        p = sub.add_parser(command, help=text)
        p.add_argument("--name", help="demo name (default: the git branch)")
        if command == "advance":
            p.add_argument("--policy-pack", type=Path, help="the policy pack the up runs (default: policy/)")
        if command == "destroy":
            p.add_argument("--force", action="store_true", help="destroy even if the teardown order looks unsafe")
    sub.add_parser("list", help="list demo stacks with phase, age and expiry")
    reap = sub.add_parser("reap", help="destroy every expired demo")
    reap.add_argument("--dry-run", action="store_true", help="only say which demos would go")
    args = parser.parse_args(argv)
    try:
        d = demos()
        if getattr(args, "policy_pack", None):
            d.policy_pack = args.policy_pack.resolve()
        if args.command == "create":
            d.create(
                args.name,
                like=args.like,
                phase=Phase(args.phase),
                region=args.region,
                context=args.context,
                ttl=parse_ttl(args.ttl),
                on_demand=args.on_demand,
            )
        elif args.command == "pr-up":
            outputs = d.pr_up(
                args.pr, like=args.like, region=args.region, ttl=parse_ttl(args.ttl), on_demand=args.on_demand
            )
            if args.outputs:
                args.outputs.write_text(json.dumps(public_outputs(outputs), indent=2) + "\n")
        elif args.command == "pr-down":
            d.pr_down(args.pr)
        elif args.command == "advance":
            d.advance(args.name)
        elif args.command == "list":
            print(d.table(d.list_demos()))
        elif args.command == "destroy":
            d.destroy(args.name, force=args.force)
        elif args.command == "reap":
            return 1 if d.reap(dry_run=args.dry_run) else 0
    except (DemoError, auto.CommandError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The offline rollout plan: the waves of `pulumi up`s that take the fleet to hardened, and what each
creates, changes and deletes.

The waves come from the planner (migration/plan.py): the fewest `up`s from the stack's configured
phases to every service hardened, preferring the race-free order. Each wave is evaluated with the
real program under Pulumi's mocks (program/offline.py), the previous wave's outputs standing for the
deployed stack (so the guard sees what a real rollout shows it), and the Kubernetes and AWS objects
are diffed by URN. The first step builds the stack at its configured phases from nothing. No Pulumi
CLI, no credentials, no cluster.

usage: python -m ops.plan [--stack STACK] [--set key=value ...]   (make plan STACK=local [PHASE=strict])

`--set phase=strict` (make plan PHASE=strict) plans as if the stack file said `phase: strict`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.annotations import CHECK_LABEL
from migration.fleet import Fleet
from migration.phases import Phase, describe
from migration.plan import plan as waves_of
from ops.cost import summary
from program import sizing
from program.config import PROJECT, parse_config, project_keys
from program.offline import Resource, Run, run_program, stack_config

Evaluate = Callable[..., Run]
_ABSENT = object()


@dataclass(frozen=True)
class Change:
    action: str  # create, update, delete
    kind: str
    namespace: str  # "-" for cluster-scoped and AWS objects
    name: str
    details: tuple[str, ...] = ()  # for an update: "path: old -> new"
    urn: str = ""


@dataclass
class Step:
    before: str | None  # None: an empty stack
    after: str  # the phases selected: "strict" when every service is there, else "api=strict, web=virtual"
    changes: list[Change] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # the `pulumi config` commands that select it
    windows: list[str] = field(default_factory=list)  # known windows of this step (the guard's warnings)
    cost: str = ""  # the first step's: what the stack costs an hour (ops/cost.py)


def objects(run: Run) -> dict[str, Resource]:
    """The cloud and cluster objects of a run by URN.

    Not this project's components (their children are listed), nor providers or stack references.
    Packaged components such as pulumi-eks's Cluster and ManagedNodeGroup are kept: their children
    are created by their provider, out of the mocks' sight, so their inputs stand for them.
    """
    return {r.urn: r for r in run.resources if not r.type.startswith(("pulumi:", f"{PROJECT}:"))}


def _describe(res: Resource) -> tuple[str, str, str]:
    if res.type.startswith("kubernetes:helm.sh/"):  # a Helm release names itself, not through metadata
        return res.kind, str(res.inputs.get("namespace") or "-"), str(res.inputs.get("name") or res.name)
    if res.type.startswith("kubernetes:"):
        return res.kind, res.k8s_namespace or "-", res.k8s_name or res.name
    return res.kind, "-", res.name


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)


def diff_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Leaf-level differences between two input trees, as 'path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            out += diff_paths(old.get(key, _ABSENT), new.get(key, _ABSENT), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            line for i, (a, b) in enumerate(zip(old, new, strict=True)) for line in diff_paths(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [f"{path}: {_show(old)} -> {_show(new)}"]


def diff(before: Run | None, after: Run) -> list[Change]:
    """Creates and updates in registration order (a resource registers only after what it depends
    on), then deletes, which `pulumi up` leaves to the end: the order the step applies them."""
    old = objects(before) if before is not None else {}
    new = objects(after)
    changes: list[Change] = []
    for urn, res in new.items():
        if urn not in old:
            changes.append(Change("create", *_describe(res), urn=urn))
        elif details := diff_paths(old[urn].inputs, res.inputs):
            if _is_check(res):  # a new expectation: the Job is replaced, so the check runs again
                details = ["runs again, with this step's expectation"]
            changes.append(Change("update", *_describe(res), details=tuple(details), urn=urn))
    changes += [Change("delete", *_describe(res), urn=urn) for urn, res in old.items() if urn not in new]
    return changes


def _is_check(res: Resource) -> bool:
    labels = (res.inputs.get("metadata") or {}).get("labels") or {}
    return res.kind == "Job" and CHECK_LABEL in labels


def plan(stack: str, overrides: Mapping[str, Any] | None = None, evaluate: Evaluate | None = None) -> list[Step]:
    """One Step per `pulumi up`: the stack at its configured phases, then each wave to hardened.

    `evaluate` runs the program (program.offline.run_program unless given, e.g. a caching one).
    Raises RuntimeError when the program fails in a step.
    """
    evaluate = evaluate or run_program
    base = dict(overrides or {})
    first = evaluate(base, stack=stack)
    raw = project_keys(stack_config(stack, base))
    if first.error:
        raise RuntimeError(f"stack {stack}, phase {raw.get('phase', 'discovery')}: {first.error}")
    cfg = parse_config(raw)
    fleet: Fleet = cfg.fleet()
    start = cfg.target()
    result = waves_of(fleet, start)
    cost = summary(first) + sizing.note(cfg, sizing.peak(cfg, result.waves, start))
    steps = [Step(None, describe(start), diff(None, first), cost=cost)]
    previous, before = first, start
    selected: Mapping[str, Phase] | None = None  # None: the first wave starts from the config as it stands
    for target, windows in zip(result.waves, result.windows, strict=True):
        run = evaluate({**base, **cfg.selecting(target)}, stack=stack, deployed=previous.outputs)
        if run.error:
            raise RuntimeError(f"stack {stack}, phase {describe(target)}: {run.error}")
        commands = cfg.config_commands(target, stack, before=selected)
        steps.append(Step(describe(before), describe(target), diff(previous, run), commands, windows))
        previous, before, selected = run, target, target
    return steps


def blocked(stack: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Where services stop short of hardened, and why (callers outside the mesh); () when none do."""
    cfg = parse_config(project_keys(stack_config(stack, dict(overrides or {}))))
    return waves_of(cfg.fleet(), cfg.target()).blocked


def render(stack: str, steps: list[Step], stops: tuple[str, ...] = ()) -> str:
    goal = "to hardened" if not stops else "as far as the callers outside the mesh allow"
    lines = [
        f"Rollout plan for stack {stack}: {len(steps) - 1} wave(s) {goal} after the first `pulumi up`, "
        "one `pulumi up` per step (evaluated offline under mocks)."
    ]
    lines += [f"  blocked {line}" for line in stops]
    for i, step in enumerate(steps, 1):
        lines.append("")
        lines.append(f"step {i}: {step.before or '(empty stack)'} -> {step.after}")
        if step.cost:
            lines.append(f"  {step.cost}")
        lines += [f"  config  {c}" for c in step.commands]
        lines += [f"  window  {w}" for w in step.windows]
        if not step.changes:
            lines.append("  no changes")
        for c in step.changes:
            lines.append(f"  {c.action:<7} {c.kind:<22} {c.namespace:<12} {c.name}")
            lines += [f"{'':10}{d}" for d in c.details]
    return "\n".join(lines) + "\n"


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # the guard's warnings are the plan's `window` lines
    overrides = _overrides(args.set)  # phase=<phase> (make plan PHASE=...): the plan as if the stack file said so
    try:
        steps = plan(args.stack, overrides)
    except RuntimeError as e:
        print(f"plan: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(render(args.stack, steps, blocked(args.stack, overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

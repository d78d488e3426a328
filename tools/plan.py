#!/usr/bin/env python3
"""The offline rollout plan: what each `pulumi up` of the migration creates, changes and deletes.

Evaluates the real program under Pulumi's mocks (tools/mockrun.py) in every phase, in order, each
step with the previous phase as the deployed one (so the phase guard sees what a real rollout
shows it), and diffs the Kubernetes and AWS objects by URN. No Pulumi CLI, no credentials, no cluster.

usage: tools/plan.py [--stack STACK] [--set key=value ...]      (make plan STACK=local)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.config import PROJECT
from stacks.phases import PHASE_NAMES
from tools.mockrun import Resource, Run, run_program

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
    after: str
    changes: list[Change] = field(default_factory=list)


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
            changes.append(Change("update", *_describe(res), details=tuple(details), urn=urn))
    changes += [Change("delete", *_describe(res), urn=urn) for urn, res in old.items() if urn not in new]
    return changes


def plan(stack: str, overrides: Mapping[str, Any] | None = None, evaluate: Evaluate | None = None) -> list[Step]:
    """One Step per `pulumi up` of the rollout, from an empty stack to the last phase.

    `evaluate` runs the program (tools.mockrun.run_program unless given, e.g. a caching one).
    Raises RuntimeError when the program fails in a phase.
    """
    evaluate = evaluate or run_program
    steps: list[Step] = []
    previous: Run | None = None
    before: str | None = None
    for phase in PHASE_NAMES:
        deployed = {"phase": before} if before else None
        run = evaluate({**(overrides or {}), "phase": phase}, stack=stack, deployed=deployed)
        if run.error:
            raise RuntimeError(f"stack {stack}, phase {phase}: {run.error}")
        steps.append(Step(before, phase, diff(previous, run)))
        previous, before = run, phase
    return steps


def render(stack: str, steps: list[Step]) -> str:
    lines = [f"Rollout plan for stack {stack}: one `pulumi up` per step (evaluated offline under mocks)."]
    for i, step in enumerate(steps, 1):
        lines.append("")
        lines.append(f"step {i}: {step.before or '(empty stack)'} -> {step.after}")
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
    overrides = _overrides(args.set)
    if "phase" in overrides:
        raise SystemExit("--set phase: the plan walks every phase itself")
    try:
        steps = plan(args.stack, overrides)
    except RuntimeError as e:
        print(f"plan: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(render(args.stack, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())

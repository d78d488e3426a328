"""What a reviewed update plan is bound to, checked before anything changes.

    python -m ops.plans stack-file --stack dev                 the stack file carries its own secrets provider
    python -m ops.plans record --stack dev --dir reviewed      reviewed/manifest.json: the tree the plan is made from
    python -m ops.plans verify --dir reviewed                  refuse a plan made from another tree
    python -m ops.plans compare reviewed/plan.json now.json    refuse when a fresh preview would do otherwise

A Pulumi update plan (`pulumi preview --save-plan`) holds resource goals only: its `config` is
written but never compared, and no commit, program or stack file is recorded (pulumi
pkg/resource/deploy/plan.go `NewPlan`, pkg/resource/stack/plan.go `SerializePlan`). So the CI
records the git tree the preview ran on, before any Pulumi command, and the deploy applies a plan
only to that tree. `pulumi up --plan` checks each resource as it goes, interleaved with the
changes (pkg/resource/deploy/step_generator.go, "violates plan"): a stale plan stops half-way. So,
inside the deploy's concurrency group, a preview is saved again right before the `up` and compared
with the reviewed plan; any other operation or input refuses the deploy before a change.

A stack file without its secrets config is rewritten by the first preview that reads it (a new
passphrase salt, or a new KMS data key: pkg/cmd/pulumi/stack/secrets.go `GetSecretsManager`,
pkg/secrets/cloud/manager.go `NewCloudSecretsManager`). CI stacks use a KMS secrets provider per
stack, committed with its `encryptedkey` (the data key encrypted by KMS, not a secret).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"
# KMS providers of pkg/cmd/pulumi/stack/secrets.go ValidateSecretsProvider (not default or passphrase).
KMS_PROVIDERS = ("awskms://", "azurekeyvault://", "gcpkms://", "hashivault://")
# pulumi sdk/go/common/resource/sig/sig.go: the key and value that mark a serialized secret.
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
# GoalV1 fields (sdk/go/common/apitype/plan.go) that say what the update does; outputDiff is the
# provider's answer and the seed a random nonce, so neither can be the same in two previews.
GOAL_FIELDS = (
    "type",
    "name",
    "custom",
    "inputDiff",
    "parent",
    "protect",
    "dependencies",
    "provider",
    "propertyDependencies",
    "deleteBeforeReplace",
    "ignoreChanges",
    "additionalSecretOutputs",
    "aliases",
    "structuredAliases",
    "id",
    "customTimeouts",
)
SHOWN = 10  # differences named before "and N more"


class PlanError(Exception):
    """The plan cannot be applied here; the message says why and what to do."""


def recovery(stack: str) -> str:
    return (
        f"Nothing was changed. To deploy main as it is now: run the deploy workflow for stack {stack} "
        f"(Actions > deploy > Run workflow, stack {stack}): it previews main and waits for the approval "
        f"of environment pulumi-{stack}."
    )


# --- the stack file ----------------------------------------------------------------------------------


def stack_file_problem(stack: str, root: Path = ROOT) -> str | None:
    """Why a preview would write to Pulumi.<stack>.yaml, or None when its secrets config is committed."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return f"no Pulumi.{stack}.yaml: a stack CI manages is a committed stack file"
    document = yaml.safe_load(path.read_text()) or {}
    provider, key = document.get("secretsprovider") or "", document.get("encryptedkey") or ""
    set_up = (
        f"once, with a role that may use the stack's KMS key: `pulumi stack change-secrets-provider --stack {stack} "
        f'"awskms://alias/consul-mesh-migration-{stack}?region=<region>"` (or `make stack STACK={stack}` for a new '
        f"stack), then commit Pulumi.{stack}.yaml"
    )
    if not provider.startswith(KMS_PROVIDERS):
        return (
            f"Pulumi.{stack}.yaml has secretsprovider {provider or '(none)'}: CI stacks use a KMS key of their own, "
            f"never a shared passphrase; {set_up}"
        )
    if not key:
        return (
            f"Pulumi.{stack}.yaml names {provider} but has no encryptedkey, so every preview would write a new "
            f"data key into it; {set_up}"
        )
    return None


# --- the tree a plan is made from ------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def checkout_tree(root: Path = ROOT) -> str:
    """The tree of HEAD, refused when a tracked file differs from it (the plan would not be of HEAD)."""
    changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    if changed:
        raise PlanError(f"the checkout differs from its commit:\n{changed}")
    return _git(root, "rev-parse", "HEAD^{tree}")


def manifest(stack: str, tree: str, commit: str, **extra: str) -> dict[str, str]:
    return {"stack": stack, "tree": tree, "commit": commit, **{k: v for k, v in extra.items() if v}}


def verify(recorded: Mapping[str, str], stack: str, tree: str) -> None:
    if recorded.get("stack") != stack:
        raise PlanError(f"the plan is for stack {recorded.get('stack')!r}, not {stack}. " + recovery(stack))
    if recorded.get("tree") != tree:
        raise PlanError(
            f"the reviewed plan of stack {stack} was made from tree {recorded.get('tree')} (commit "
            f"{recorded.get('commit')}); this commit's tree is {tree}: main moved after the preview. " + recovery(stack)
        )


# --- a fresh preview against the reviewed plan ------------------------------------------------------


def _normal(value: Any) -> Any:
    """A plan value with every secret as one marker: the ciphertext differs in each preview (random nonce)."""
    if isinstance(value, Mapping):
        if value.get(SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


NO_OP = ("same",)  # pulumi apitype.OpType: the step that changes nothing
GOAL_OPTIONS = tuple(f for f in GOAL_FIELDS if f != "inputDiff")


def _steps(resource_plan: Mapping[str, Any]) -> list[str]:
    return list(resource_plan.get("steps") or [])


def _goal(resource_plan: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource_plan.get("goal") or {}


def _does_nothing(steps: list[str]) -> bool:
    return all(step in NO_OP for step in steps)


def _is_replace(steps: list[str]) -> bool:
    return any("replace" in step for step in steps)


def _steps_allowed(reviewed: list[str], now: list[str]) -> bool:
    """Pulumi's own tolerance (pkg/resource/deploy/plan.go, `Plan`): a same step in place of an update
    or a replace, and an update in place of a replace; anything else must be the planned steps."""
    return now == reviewed or _does_nothing(now) or (now == ["update"] and _is_replace(reviewed))


def _inputs_allowed(reviewed: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The input keys `now` would change otherwise than planned, the way checkDiff (plan.go) tells:
    each add or update must be planned as an add or update to the same value, each delete as a
    delete. Planned changes already made (after an earlier deploy) are simply absent from `now`."""
    planned = {**_normal(reviewed.get("adds") or {}), **_normal(reviewed.get("updates") or {})}
    changed = {**_normal(now.get("adds") or {}), **_normal(now.get("updates") or {})}
    wrong = [k for k, v in changed.items() if k not in planned or planned[k] != v]
    wrong += [k for k in now.get("deletes") or [] if k not in (reviewed.get("deletes") or [])]
    return sorted(wrong)


def _shown(steps: list[str]) -> str:
    return " ".join(steps) or "no step"


def differences(reviewed: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What a fresh plan would do beyond the reviewed one, one line per resource.

    The fresh plan may do less (a planned change already made by an earlier deploy is a same step
    now), never more or otherwise. A changed secret value is not seen here (both are "[secret]");
    `pulumi up --plan` decrypts and compares it.
    """
    old, new = reviewed.get("resourcePlans") or {}, now.get("resourcePlans") or {}
    out = []
    for urn in sorted(new):
        steps = _steps(new[urn])
        if _does_nothing(steps):
            continue
        if urn not in old:
            out.append(f"{urn}: {_shown(steps)}, not in the reviewed plan")
            continue
        planned = _steps(old[urn])
        if not _steps_allowed(planned, steps):
            out.append(f"{urn}: reviewed {_shown(planned)}, now {_shown(steps)}")
            continue
        before, after = _goal(old[urn]), _goal(new[urn])
        options = [f for f in GOAL_OPTIONS if _normal(before.get(f)) != _normal(after.get(f))]
        inputs = _inputs_allowed(before.get("inputDiff") or {}, after.get("inputDiff") or {})
        if options or inputs:
            what = [*options, *(f"input {k}" for k in inputs)]
            out.append(f"{urn}: {', '.join(what)} not as reviewed")
    return out


def compare(reviewed: Mapping[str, Any], now: Mapping[str, Any], stack: str) -> None:
    found = differences(reviewed, now)
    if found:
        more = f"\n  and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise PlanError(
            f"stack {stack} would not do what was reviewed ({len(found)} resource(s)):\n  "
            + "\n  ".join(found[:SHOWN])
            + more
            + "\n"
            + recovery(stack)
        )


# --- the command line ------------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise PlanError(f"{path} is not a JSON object")
    return data


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.plans", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    stack_file = sub.add_parser("stack-file", help="refuse a stack file a preview would write to")
    record = sub.add_parser("record", help="write manifest.json: the stack and the tree of HEAD")
    check = sub.add_parser("verify", help="refuse a plan whose manifest names another tree")
    for p in (stack_file, record):
        p.add_argument("--stack", required=True)
    for p in (record, check):
        p.add_argument("--dir", type=Path, required=True, help="where the plan and its manifest are")
    record.add_argument("--head", default="", help="the pull request's head commit, if any")
    record.add_argument("--base", default="", help="the pull request's base commit, if any")
    check.add_argument("--stack", required=True)
    fresh = sub.add_parser("compare", help="refuse when a fresh plan differs from the reviewed one")
    fresh.add_argument("reviewed", type=Path)
    fresh.add_argument("now", type=Path)
    fresh.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "stack-file":
            problem = stack_file_problem(args.stack, root)
            if problem:
                raise PlanError(problem)
        elif args.command == "record":
            args.dir.mkdir(parents=True, exist_ok=True)
            found = manifest(
                args.stack, checkout_tree(root), _git(root, "rev-parse", "HEAD"), head=args.head, base=args.base
            )
            (args.dir / MANIFEST).write_text(json.dumps(found, indent=2) + "\n")
            print(f"plan of stack {args.stack} bound to tree {found['tree']} (commit {found['commit']})")
        elif args.command == "verify":
            verify(_read(args.dir / MANIFEST), args.stack, checkout_tree(root))
            print(f"the reviewed plan of stack {args.stack} was made from this tree")
        else:
            compare(_read(args.reviewed), _read(args.now), args.stack)
            print(f"a fresh preview of stack {args.stack} does what was reviewed")
    except (PlanError, subprocess.CalledProcessError) as e:
        print(f"::error::{e}" if isinstance(e, PlanError) else f"::error::git: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drift: what a `pulumi up` would change in a stack whose program and config have not changed.

    pulumi preview --refresh --json --stack dev > preview.json
    python -m ops.drift preview.json [--stack dev]        (or - for standard input)
    python -m ops.drift --unreadable state.json           the URNs the read-only role must not refresh

CI checks drift with the read-only role (cluster level `preview`: no Secrets). Refreshing a Helm
release reads Helm's storage, the Secrets `sh.helm.release.v1.*` of its namespace (pulumi-kubernetes
v4.32.0 provider/pkg/provider/helm_release.go `Read` -> `resourceReleaseLookup`), and refreshing a
Secret reads it, so those resources (named from `pulumi stack export`) are passed to the preview as
`--exclude`, which skips their refresh (pulumi pkg/resource/deploy/deployment_executor.go
`refresh`) and their diff: their drift is not checked.

`pulumi preview --refresh` reads every resource's live state first (without writing the state
file), then diffs the program against it, so an object changed, deleted or added by hand shows as
a step. This tool reads the preview's JSON document and prints one line per drifted object:

    update  kubernetes:consul.hashicorp.com/v1alpha1:ServiceDefaults  api/api
        spec.mutualTLSMode: "permissive" -> (absent)                   (one line, wrapped here)

Exit status: 0 no drift; 1 drift (the lines name it); 2 the document is unusable (not a preview
digest, or the preview reported errors, so "no steps" would prove nothing).

What counts: resource steps only. The root stack (its outputs), `same` steps, reads of external
resources (stack references) and the refresh's own `refresh` steps are not drift.

The document is the CLI's preview digest (`pulumi preview --json`): `display.PreviewDigest` in
pulumi/pulumi sdk/go/common/display, built by `ShowPreviewDigest` in pkg/backend/display/json.go.
Each step has `op`, `urn`, `oldState`/`newState` (apitype.ResourceV3: type, inputs, outputs, ...,
secrets shown as "[secret]"), `diffReasons` and `detailedDiff` (property path -> {kind, inputDiff}).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_STACK = "pulumi:pulumi:Stack"
# Steps that change nothing a program manages: the engine's no-op, reads of resources the program
# only looks up (`get`, StackReference), and the refresh's reading of live state.
NOT_DRIFT = frozenset({"same", "read", "read-replacement", "discard", "discard-replaced", "refresh"})
_ABSENT = object()
# What the read-only level cannot refresh (see the module docstring).
READS_SECRETS = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:Secret"})
_PATH_PART = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


class DigestError(Exception):
    """The input is not a usable preview digest."""


@dataclass(frozen=True)
class Drift:
    op: str
    type: str
    name: str  # namespace/name for namespaced Kubernetes objects, else the object's name
    fields: tuple[str, ...]

    def line(self) -> str:
        return f"{self.op:<7} {self.type}  {self.name}  {'; '.join(self.fields)}".rstrip()


def _type(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<parent type>$<type>::<name>
    return urn.split("::")[2].rsplit("$", 1)[-1] if urn.count("::") >= 3 else urn


def _path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _PATH_PART.match(path, pos)
        if match is None or match.end() == pos:
            return [path]  # not a property path: treat it as one key
        key, index, quoted = match.groups()
        parts.append(int(index) if index is not None else key if key is not None else json.loads(f'"{quoted}"'))
        pos = match.end()
    return parts


def value_at(tree: Any, path: str) -> Any:
    """The value at a property path such as `spec.sources[0].action` or `metadata.labels["a.b/c"]`."""
    for part in _path(path):
        if isinstance(part, int):
            if not (isinstance(tree, list) and part < len(tree)):
                return _ABSENT
            tree = tree[part]
        elif isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        else:
            return _ABSENT
    return tree


def _show(value: Any) -> str:
    # JSON keeps any newline or workflow-command text in a value on this one line.
    return "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)


def _state(step: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    return step.get(which) or {}


def _name(step: Mapping[str, Any]) -> str:
    new, old = _state(step, "newState"), _state(step, "oldState")
    typ = new.get("type") or old.get("type") or _type(step.get("urn", ""))
    for props in (new.get("inputs") or {}, old.get("outputs") or {}, old.get("inputs") or {}):
        if typ.startswith("kubernetes:helm.sh/") and props.get("name"):  # a Helm release names itself
            namespace, name = props.get("namespace"), props["name"]
        elif typ.startswith("kubernetes:") and (props.get("metadata") or {}).get("name"):
            namespace, name = props["metadata"].get("namespace"), props["metadata"]["name"]
        else:
            continue
        return f"{namespace}/{name}" if namespace else str(name)
    return step.get("urn", "").rsplit("::", 1)[-1]


def _fields(step: Mapping[str, Any]) -> tuple[str, ...]:
    op = step.get("op", "")
    if op in ("create", "import"):
        return ("missing: the up would create it",)
    if op == "delete":
        return ("not in the program: the up would delete it",)
    new, old = _state(step, "newState"), _state(step, "oldState")
    detailed: Mapping[str, Any] = step.get("detailedDiff") or {}
    fields = []
    for path in sorted(detailed):
        diff = detailed[path] or {}
        before = value_at(old.get("inputs") if diff.get("inputDiff") else old.get("outputs"), path)
        after = _ABSENT if str(diff.get("kind", "")).startswith("delete") else value_at(new.get("inputs"), path)
        fields.append(f"{path}: {_show(before)} -> {_show(after)}")
    if not fields:  # providers without a detailed diff name the top-level keys only
        fields = [str(key) for key in step.get("diffReasons") or step.get("replaceReasons") or []]
    if op.startswith("replace") or op in ("create-replacement", "delete-replaced"):
        fields.append("(replaced)")
    return tuple(fields) or ("(no field named by the provider)",)


def drifted(digest: Mapping[str, Any]) -> list[Drift]:
    """The drifted objects of a preview digest, in the preview's order (one per URN)."""
    if not isinstance(digest, Mapping) or not isinstance(digest.get("steps", []), list):
        raise DigestError("not a `pulumi preview --json` document: no list of steps")
    errors = [d.get("message", "").strip() for d in digest.get("diagnostics") or [] if d.get("severity") == "error"]
    if errors:
        raise DigestError("the preview failed, so it proves nothing about drift:\n  " + "\n  ".join(errors))
    found: dict[str, Drift] = {}
    for step in digest.get("steps") or []:
        urn, op = step.get("urn", ""), step.get("op", "")
        typ = _state(step, "newState").get("type") or _state(step, "oldState").get("type") or _type(urn)
        if op in NOT_DRIFT or typ == ROOT_STACK or urn in found:
            continue
        found[urn] = Drift(op, typ, _name(step), _fields(step))
    return list(found.values())


def report(digest: Mapping[str, Any], stack: str | None = None) -> tuple[int, str]:
    """(exit status, text) for a preview digest."""
    where = f"stack {stack}" if stack else "the stack"
    try:
        drift = drifted(digest)
    except DigestError as e:
        return 2, f"drift: {e}"
    if not drift:
        same = (digest.get("changeSummary") or {}).get("same")
        return 0, f"no drift in {where}" + (f" ({same} resources as the program says)" if same is not None else "")
    lines = [f"drift in {where}: {len(drift)} object(s) differ from the program; `pulumi up` would change them"]
    return 1, "\n".join([*lines, *(d.line() for d in drift)])


def unreadable(export: Mapping[str, Any]) -> list[str]:
    """The URNs in a `pulumi stack export` document (apitype.UntypedDeployment, `deployment.resources`)
    whose refresh needs Secrets."""
    resources = (export.get("deployment") or {}).get("resources") or []
    return [r["urn"] for r in resources if r.get("type") in READS_SECRETS and r.get("urn")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.drift", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("preview", help="the output of `pulumi preview --refresh --json` (- for standard input)")
    parser.add_argument("--stack", help="the stack's name, for the message")
    parser.add_argument(
        "--unreadable", action="store_true", help="read `pulumi stack export` instead; print the URNs not to refresh"
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.preview == "-" else Path(args.preview).read_text()
        digest = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"drift: cannot read {args.preview}: {e}", file=sys.stderr)
        return 2
    if args.unreadable:
        print("\n".join(unreadable(digest)))
        return 0
    status, message = report(digest, args.stack)
    print(message, file=sys.stderr if status == 2 else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())

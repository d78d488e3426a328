"""The pull-request comments CI posts: a stack's `pulumi up` after merge, and a pull request's demo.

    python -m ops.pr_comment deploy --stack dev --outcome success|failure --outputs outputs.json --log up.log
    python -m ops.pr_comment demo --stack demo-pr-12 --outcome success|failure --outputs outputs.json --log up.log

Prints Markdown. `--outputs` is `pulumi stack output --json` (or `ops.demo pr-up --outputs`);
only the outputs named here are posted (never `kubeconfig`, and a secret shows as "[secret]"
there anyway). On failure the comment quotes the line of the log that says why: the postcheck's
line when there is one (the in-cluster check whose failure fails the `up`), else the first
`error:` line that is not the closing "update failed".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEPLOY_OUTPUTS = ("phase", "phases", "nextPhase", "verify")
DEMO_OUTPUTS = ("gatewayUrl", "phase", "phases", "nextPhase", "verify")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_COUNT = re.compile(r"error:\s*\d+ errors? occurred:?$", re.IGNORECASE)
_SUMMARY_ERRORS = re.compile(r"error:\s*(update|preview|destroy|refresh) failed\s*$", re.IGNORECASE)


def failing_line(log: str) -> str | None:
    """The line of a `pulumi up` log that says why it failed.

    Only the Diagnostics section counts when there is one (the resource table above it names
    failed steps without the reason). A postcheck line that reports a failure wins; else the first
    `error:` line other than the closing "update failed", with "N errors occurred:" joined to the
    line that follows it.
    """
    lines = [line.strip() for line in _ANSI.sub("", log).splitlines()]
    if "Diagnostics:" in lines:
        lines = lines[lines.index("Diagnostics:") + 1 :]
    lines = [line for line in lines if line]
    for line in lines:
        if "postcheck" in line.lower() and re.search(r"fail|error", line, re.IGNORECASE):
            return line
    for i, line in enumerate(lines):
        if "error:" not in line.lower() or _SUMMARY_ERRORS.search(line):
            continue
        if _COUNT.search(line) and i + 1 < len(lines):
            return f"{line} {lines[i + 1]}"
        return line
    return None


def fenced(text: str, info: str = "") -> str:
    """A code block that no backtick run inside `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _outputs_section(outputs: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    lines = []
    for key in keys:
        if key not in outputs or key == "verify":
            continue
        value = outputs[key]
        lines.append(f"- `{key}`: " + (f"`{value}`" if isinstance(value, str) else fenced(json.dumps(value))))
    if outputs.get("verify") is not None and "verify" in keys:
        verify = outputs["verify"]
        text = verify if isinstance(verify, str) else json.dumps(verify, indent=2)
        lines += ["", "What to check before the next phase (`verify`):", "", fenced(text, "json")]
    return lines


def comment(
    kind: str, stack: str, outcome: str, outputs: Mapping[str, Any], log: str = "", run_url: str | None = None
) -> str:
    ok = outcome == "success"
    if kind == "deploy":
        title = f"`pulumi up` of stack `{stack}` with the reviewed plan: " + ("succeeded" if ok else "**failed**")
        keys = DEPLOY_OUTPUTS
    else:
        title = f"Demo `{stack}`: " + ("ready" if ok else "**the `up` failed**")
        keys = DEMO_OUTPUTS
    lines = [f"### {title}", ""]
    if not ok:
        why = failing_line(log)
        lines += ["Why:", "", fenced(why or "no error line in the output; see the run's log"), ""]
    if ok and kind == "demo" and outputs.get("gatewayUrl"):
        lines += [f"Gateway: {outputs['gatewayUrl']}", ""]
    lines += _outputs_section(outputs, keys) or ["(no stack outputs)"]
    if run_url:
        lines += ["", f"[The run]({run_url})"]
    return "\n".join(lines) + "\n"


def _read_json(path: Path | None) -> Mapping[str, Any]:
    if path is None or not path.exists() or not path.read_text().strip():
        return {}  # a failed first `up` has no outputs yet
    data = json.loads(path.read_text())
    return data if isinstance(data, Mapping) else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.pr_comment", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("kind", choices=("deploy", "demo"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--outcome", required=True, help="the step's outcome: success, failure, cancelled, skipped")
    parser.add_argument("--outputs", type=Path, help="stack outputs as JSON")
    parser.add_argument("--log", type=Path, help="the command's output")
    parser.add_argument("--run-url", help="link to the workflow run")
    args = parser.parse_args(argv)
    log = args.log.read_text(errors="replace") if args.log and args.log.exists() else ""
    sys.stdout.write(comment(args.kind, args.stack, args.outcome, _read_json(args.outputs), log, args.run_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())

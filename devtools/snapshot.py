"""Hold what the default stacks render: one hash of every resource's inputs, per stack and phase.

    make snapshot            python -m devtools.snapshot          compare with tests/data/default_output.json
    make snapshot WRITE=1    python -m devtools.snapshot --write  record it there, after a deliberate change

Each phase is rendered along the rollout (the phase before it deployed), as users' stacks move.
The test tests/program/test_identity.py fails on any difference and names the resources; a change meant to
alter what deployed stacks get re-records the file in the same commit, so review sees which
resources it touches.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from migration.phases import PHASE_NAMES
from program.offline import run_program

FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "default_output.json"
STACKS = ("dev", "local")


def fingerprint(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def render(stack: str, phase: str) -> dict[str, str]:
    i = PHASE_NAMES.index(phase)
    run = run_program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]} if i else None)
    if run.error:
        raise RuntimeError(f"{stack}/{phase}: {run.error}")
    return {r.urn: fingerprint(r.inputs) for r in run.resources}


def differences(held: dict[str, str], now: dict[str, str]) -> list[str]:
    return [
        f"{'added' if urn not in held else 'removed' if urn not in now else 'changed'}: {urn}"
        for urn in sorted(held.keys() | now.keys())
        if held.get(urn) != now.get(urn)
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    now = {f"{s}/{p}": render(s, p) for s in STACKS for p in PHASE_NAMES}
    if args == ["--write"]:
        FILE.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"recorded {sum(map(len, now.values()))} resources in {FILE}")
        return 0
    held = json.loads(FILE.read_text())
    found = [f"{key} {line}" for key in now for line in differences(held.get(key, {}), now[key])]
    print("\n".join(found) or "the default stacks render exactly what is recorded")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

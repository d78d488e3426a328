"""Benchmark: what the whole stack costs to evaluate, next to an empty program with the same SDKs.

Each measurement is a fresh interpreter (imports included, as `pulumi up` pays them), evaluating
the real program under mocks for one phase. The baseline is an empty program that imports the
same SDK modules the stack ends up loading (pulumi_aws.ec2, pulumi_kubernetes.core.v1, ...; found
by running the stack once) and registers nothing, so the ratio is the cost of our own work.
Target: ratio <= 1.5; the exit status is 1 when a phase is over it.

usage: tools/bench.py [--stack dev] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ["discovery", "permissive", "strict", "virtual", "hardened"]
TARGET = 1.5  # the stack may cost at most this many times the empty program

# One evaluation in a child interpreter; prints the resource count and any error as JSON.
CHILD = """\
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tools.mockrun import run_program
SDKS = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pydantic")
main = Path(sys.argv[4]) if len(sys.argv) > 4 else None
run = run_program({"phase": sys.argv[3]}, stack=sys.argv[2], main=main)
sdk = sorted(m for m in sys.modules if m.split(".")[0] in SDKS)
print(json.dumps({"resources": len(run.resources), "error": run.error, "modules": sdk}))
"""


def measure(stack: str, phase: str, main: Path | None, repeat: int) -> tuple[float, int, list[str]]:
    times, count, modules = [], 0, []
    for _ in range(repeat):
        args = [sys.executable, "-c", CHILD, str(ROOT), stack, phase] + ([str(main)] if main else [])
        start = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        times.append(time.perf_counter() - start)
        result = json.loads(out.strip().splitlines()[-1])
        if result["error"]:
            raise SystemExit(f"phase {phase}: the program failed: {result['error']}")
        count, modules = result["resources"], result["modules"]
    return statistics.median(times), count, modules


Measure = Callable[[str, str, Path | None, int], tuple[float, int, list[str]]]


def main(argv: list[str] | None = None, measure: Measure = measure) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    rows = {phase: measure(args.stack, phase, None, args.repeat) for phase in PHASES}
    modules = sorted({m for _, _, mods in rows.values() for m in mods})
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.py"
        empty.write_text("import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules))
        base, _, _ = measure(args.stack, "discovery", empty, args.repeat)
    print(f"{'program':<22}{'seconds':>9}{'resources':>11}{'ratio':>8}")
    print(f"{'empty (same SDKs)':<22}{base:>9.2f}{0:>11}{1.0:>8.2f}")
    worst = 0.0
    for phase, (seconds, count, _) in rows.items():
        worst = max(worst, seconds / base)
        print(f"{'stack ' + phase:<22}{seconds:>9.2f}{count:>11}{seconds / base:>8.2f}")
    over = worst > TARGET
    print(f"worst ratio {worst:.2f} (target <= {TARGET:.2f}): {'OVER TARGET' if over else 'ok'}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

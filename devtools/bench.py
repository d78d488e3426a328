"""Benchmark: what the whole stack costs to evaluate, next to an empty program with the same SDKs;
a fleet of 200 services next to the 2-service default; the planner on 200 services; the checks.

Each stack measurement is a fresh interpreter (imports included, as `pulumi up` pays them),
evaluating the real program under mocks for one phase. The baseline is an empty program that
imports the same SDK modules the stack ends up loading (pulumi_aws.ec2, pulumi_kubernetes.core.v1,
...; found by running the stack once) and registers nothing, so the ratio is the cost of our own
work. Targets (the exit status is 1 when a figure is over its target):
- each phase at most 1.5 times the empty program;
- the stack with a fleet of 200 services at most 3 times the 2-service default;
- the planner's answer for those 200 services in under a second;
- a step's checks within their 60 s budget (devtools/bench_checks.py);
- `make discover` on a recorded 200-service cluster in under 10 s, holding one log line at a time
  (devtools/bench_discover.py);
- 200 adopted workloads at most 2.5 times the SDK's floor for the same resources (a replay of them),
  and their plan in under a second (devtools/bench_adopted.py).

usage: python -m devtools.bench [--stack dev] [--repeat 3]
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

from devtools.fleets import FLEET

ROOT = Path(__file__).resolve().parent.parent
PHASES = ["discovery", "permissive", "strict", "virtual", "hardened"]
TARGET = 1.5  # the stack may cost at most this many times the empty program
FLEET_TARGET = 3.0  # a 200-service fleet may cost at most this many times the 2-service default
PLANNER_TARGET_S = 1.0

# One evaluation in a child interpreter; prints the resource count and any error as JSON.
CHILD = """\
import json, sys
from pathlib import Path
from program.offline import run_program
SDKS = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pydantic")
main = Path(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
run = run_program({"phase": sys.argv[3], **extra}, stack=sys.argv[2], main=main)
sdk = sorted(m for m in sys.modules if m.split(".")[0] in SDKS)
print(json.dumps({"resources": len(run.resources), "error": run.error, "modules": sdk}))
"""


def measure(
    stack: str, phase: str, main: Path | None, repeat: int, extra: dict[str, object] | None = None
) -> tuple[float, int, list[str]]:
    times, count, modules = [], 0, []
    for _ in range(repeat):
        args = [
            sys.executable,
            "-c",
            CHILD,
            "",  # sys.argv[1]: `-c` runs in ROOT, whose packages import from there
            stack,
            phase,
            str(main) if main else "",
            json.dumps(extra or {}),
        ]
        start = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        times.append(time.perf_counter() - start)
        result = json.loads(out.strip().splitlines()[-1])
        if result["error"]:
            raise SystemExit(f"phase {phase}: the program failed: {result['error']}")
        count, modules = result["resources"], result["modules"]
    return statistics.median(times), count, modules


Measure = Callable[..., tuple[float, int, list[str]]]


def planner_seconds() -> float:
    from migration.phases import Phase
    from migration.plan import plan
    from program.config import parse_config

    fleet = parse_config(FLEET).fleet()
    start = time.perf_counter()
    plan(fleet, dict.fromkeys(fleet.names, Phase.DISCOVERY))
    return time.perf_counter() - start


def main(
    argv: list[str] | None = None,
    measure: Measure = measure,
    planner: Callable[[], float] = planner_seconds,
    checks: Callable[[], bool] = lambda: bench_checks(),
    discover: Callable[[], bool] = lambda: bench_discover(),
    adopted: Callable[[], bool] = lambda: bench_adopted(),
) -> int:
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

    default, _, _ = rows["discovery"]
    fleet, fleet_count, _ = measure(args.stack, "discovery", None, args.repeat, FLEET)
    fleet_over = fleet / default > FLEET_TARGET
    print(
        f"fleet of 200 services: {fleet:.2f} s, {fleet_count} resources, {fleet / default:.2f} x the 2-service "
        f"default (target <= {FLEET_TARGET:.1f}): {'OVER TARGET' if fleet_over else 'ok'}"
    )
    planned = planner()
    planner_over = planned > PLANNER_TARGET_S
    print(
        f"planner, 200 services: {planned:.3f} s (target < {PLANNER_TARGET_S:.0f} s): "
        f"{'OVER TARGET' if planner_over else 'ok'}"
    )
    checks_over = checks()
    discover_over = discover()
    adopted_over = adopted()
    return 1 if (over or fleet_over or planner_over or checks_over or discover_over or adopted_over) else 0


def bench_checks() -> bool:
    from devtools import bench_checks

    return bench_checks.main([]) != 0


def bench_discover() -> bool:
    from devtools import bench_discover

    return bench_discover.main([]) != 0


def bench_adopted() -> bool:
    from devtools import bench_adopted

    return bench_adopted.main([]) != 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the check Jobs against the loopback cluster of devtools/stubs.py: what a step's checks cost.

Issue 12's budget: a step's checks add at most 60 s to a default `up`. This measures the script's part
as the Job runs it (its rendered command in a fresh interpreter, the rendered document and script)
against stubs built from the same rendered program, for the step that costs the checks the most:
permissive -> strict, where the postcheck probes every pod and sends its requests through the gateway
and the precheck reads every sidecar log of the window (kubelet's probes every 5 s, the mesh callers'
calls), the sidecars' statistics and the callers' addresses.

Then the same precheck for a fleet of `--fleet` services (devtools/fleets.py fleet_of), at the planner's
wave that makes the most services refuse plain text.

It prints the median seconds of each, then the worst case the default timeouts allow (each check
running to its whole budget, plus an allowance for starting two Job pods), and exits 1 when the
measured time is over TARGET_MEASURED or the worst case over BUDGET. Pulling the image and scheduling
the pods happen on the cluster and are not measured here.

usage: python -m devtools.bench_checks [--repeat 5] [--fleet 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools import stubs
from devtools.fleets import fleet_of
from meshcheck import mesh_check
from migration.phases import PERMISSIVE, Phase, refuses_plain_text
from migration.plan import plan
from program.config import parse_config, project_keys
from program.offline import Run, run_program, stack_config

BUDGET = 60.0  # seconds a step's checks may add to an `up` (issue 12)
JOB_START_ALLOWANCE = 15.0  # scheduling and starting two Job pods, image cached; not measured here
TARGET_MEASURED = 5.0  # both checks' passing runs against the stubs, for the default step


def timed(step: stubs.Step, kind: str, workdir: Path) -> tuple[float, str]:
    cluster = stubs.precheck_cluster(step) if kind == "precheck" else stubs.postcheck_cluster(step)
    cluster.start()
    try:
        started = time.perf_counter()
        code, line = stubs.run_job(step.run, kind, cluster, workdir)
        seconds = time.perf_counter() - started
    finally:
        cluster.stop()
    if code != 0:
        raise SystemExit(f"{kind} failed against the stubs (exit {code}): {line}")
    return seconds, line


def evaluate(overrides: dict[str, Any], *, stack: str = "local", deployed: dict[str, Any] | None = None) -> Run:
    run = run_program(overrides, stack=stack, deployed=deployed)
    if run.error:
        raise SystemExit(f"the program failed for {stack}: {run.error}")
    return run


def default_step() -> stubs.Step:
    """permissive -> strict on the local stack, along the rollout."""
    return stubs.walk(evaluate, [{"phase": p} for p in ("discovery", "permissive", "strict")])[-1]


def fleet_step(n: int) -> tuple[stubs.Step, int]:
    """The wave of the planner that makes the most services of a fleet of `n` refuse plain text."""
    base = {"services": fleet_of(n), "gateway": {"service": "gw"}}
    cfg = parse_config(project_keys(stack_config("local", base)))
    fleet = cfg.fleet()
    waves = [cfg.target(), *plan(fleet, cfg.target()).waves]

    def tightened(before: dict[str, Phase], after: dict[str, Phase]) -> int:
        return sum(
            1
            for s in fleet.services
            if before[s.name] <= PERMISSIVE and refuses_plain_text(after[s.name], s.migrates) and s.migrates
        )

    k = max(range(1, len(waves)), key=lambda i: tightened(waves[i - 1], waves[i]))
    targets = [{**base, **cfg.selecting(w)} for w in waves[max(0, k - 2) : k + 1]]
    steps = stubs.walk(evaluate, targets)
    return steps[-1], tightened(waves[k - 1], waves[k])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=200, help="services of the fleet whose precheck is timed")
    args = parser.parse_args(argv)

    step = default_step()
    big, count = fleet_step(args.fleet)
    times: dict[str, list[float]] = {"postcheck": [], "precheck": [], "fleet": []}
    lines: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for kind in ("postcheck", "precheck"):
                seconds, lines[kind] = timed(step, kind, Path(tmp) / f"{kind}-{i}")
                times[kind].append(seconds)
        for i in range(max(1, args.repeat // 2)):
            seconds, lines["fleet"] = timed(big, "precheck", Path(tmp) / f"fleet-{i}")
            times["fleet"].append(seconds)

    post_s, pre_s, fleet_s = (statistics.median(times[c]) for c in ("postcheck", "precheck", "fleet"))
    measured = post_s + pre_s
    doc = stubs.document(step.run, "postcheck")["postcheck"]
    pods = sum(1 for s in doc["services"] for v in s["versions"] if v["role"] == "running")
    budget_pre = mesh_check.PreTimeouts().total
    print(f"check Jobs against local stubs, median of {args.repeat}:")
    print(f"  postcheck  {pods} versions' pods probed, {doc['gateway']['requests']} requests   {post_s:6.2f} s")
    print(f"  precheck   sidecar logs of the last 900 s, statistics, caller look-ups  {pre_s:6.2f} s")
    verdict = "ok" if measured <= TARGET_MEASURED else "OVER TARGET"
    print(f"  both{'':62}{measured:6.2f} s  (target {TARGET_MEASURED:g} s: {verdict})")
    print(f"  postcheck said: {lines['postcheck']}")
    print(f"  precheck said:  {lines['precheck']}")
    fleet_ok = fleet_s <= budget_pre
    print(
        f"precheck of a fleet of {args.fleet} services, {count} of them made strict in one wave: {fleet_s:.2f} s "
        f"(its budget {budget_pre:g} s: {'ok' if fleet_ok else 'OVER BUDGET'})"
    )
    said = lines["fleet"].split("] ", 1)[-1]  # after the phases of every service
    print(f"  it said: {said[:400]}{'...' if len(said) > 400 else ''}")
    post, pre = mesh_check.PostTimeouts(), mesh_check.PreTimeouts()
    worst = post.total + pre.total + JOB_START_ALLOWANCE
    within = "ok" if worst <= BUDGET else "OVER BUDGET"
    print(
        f"worst case the default timeouts allow: postcheck {post.total:g} s + precheck {pre.total:g} s + "
        f"{JOB_START_ALLOWANCE:g} s to start two Job pods = {worst:g} s (budget {BUDGET:g} s a step: {within})"
    )
    return 0 if measured <= TARGET_MEASURED and worst <= BUDGET and fleet_ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: a fleet of 200 adopted workloads against the SDK's own floor for the same resources, and
its plan.

The program is evaluated under mocks, in a fresh interpreter, against a recorded cluster of the
teams' objects (devtools/workloads.py), at `permissive` (every patch at its fullest: annotations and
preStop). Its floor is a replay: another fresh interpreter, importing the same SDK modules, registers
exactly the resources the program registered (type, name, parent, inputs, depends_on) and makes the
same reads, through Pulumi's generic resource classes and no logic of ours. The ratio of the two is
the cost of our own work for those resources. Targets (exit 1 when over):
- the adopted fleet at most 2.5 times its replay;
- the planner's waves for those 200 services in under a second.

usage: python -m devtools.bench_adopted [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools import workloads as live

ROOT = Path(__file__).resolve().parent.parent
TARGET = 2.5
PLANNER_TARGET_S = 1.0
PHASE = "permissive"
SDKS = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pydantic")


def adopted_fleet_of_200() -> list[dict[str, Any]]:
    """The benchmark's 200-service graph (devtools/fleets.py), as teams' own Deployments: 40 in the mesh
    from the start call 80 migrating ones, which call 79 more; 20 team namespaces."""
    from devtools.fleets import fleet_of

    out = []
    for s in fleet_of(200):
        entry = {**s, "workload": {"kind": "Deployment", "name": s["name"]}, "port": 80}
        out.append(entry)
    return out


def cluster(services: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The teams' objects as the API server stores them: each service's Deployment (1 replica, its
    own ServiceAccount, injected by its own chart when it is in the mesh from the start), its Service,
    and the namespaces."""
    objects: list[dict[str, Any]] = [live.namespace(ns) for ns in sorted({s["namespace"] for s in services})]
    for s in services:
        container = {
            "name": "app",
            "image": f"registry.example.com/{s['namespace']}/{s['name']}:1.0.0",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        }
        injected = {} if s.get("migrates") else {"consul.hashicorp.com/connect-inject": "true"}
        objects.append(
            live.deployment(
                s["name"],
                s["namespace"],
                [container],
                replicas=1,
                service_account=s["name"],
                template_annotations=injected,
            )
        )
        objects.append(live.service(s["name"], s["namespace"], [{"name": "http", "port": 80, "targetPort": "http"}]))
    return live.cluster(*objects)


def config() -> dict[str, Any]:
    from devtools.fleets import FLEET_NODES

    return {
        "phase": PHASE,
        "services": adopted_fleet_of_200(),
        "gateway": {"service": "gw"},
        "cluster": FLEET_NODES,
        "verify": {"enabled": False},
    }


def dump(run: Any) -> dict[str, Any]:
    """What a run registered and read, as the replay takes it."""
    resources = [
        {
            "type": r.type,
            "name": r.name,
            "urn": r.urn,
            "custom": r.custom,
            "inputs": r.inputs,
            "parent": r.parent,
            "dependencies": r.dependencies,
        }
        for r in run.resources
    ]
    return {"resources": resources, "reads": run.reads}


# The program, in a child: writes what it registered and read, for the replay.
PROGRAM = """\
import json, sys
from devtools import bench_adopted as b
from program.offline import run_program
services = b.config()
run = run_program(services, stack="dev", cluster=b.cluster(services["services"]))
if run.error:
    print(json.dumps({"error": run.error})); sys.exit(0)
open(sys.argv[1], "w").write(json.dumps(b.dump(run)))
sdk = sorted(m for m in sys.modules if m.split(".")[0] in b.SDKS)
print(json.dumps({"error": None, "resources": len(run.resources), "reads": len(run.reads), "modules": sdk}))
"""

# The replay, a program of its own (run under the same mocks): the same resources through Pulumi's
# generic classes, in the order they were registered (a parent or a dependency always comes first).
REPLAY = """\
import importlib, json, os
import pulumi
for m in json.loads(os.environ.get("REPLAY_MODULES", "[]")):
    importlib.import_module(m)
dump = json.loads(open(os.environ["REPLAY_DUMP"]).read())
made = {}
for r in dump["resources"]:
    parent = made.get(r["parent"])
    deps = [made[d] for d in r["dependencies"] if d in made]
    opts = pulumi.ResourceOptions(parent=parent, depends_on=deps)
    if r["type"].startswith("pulumi:providers:"):
        made[r["urn"]] = pulumi.ProviderResource(r["type"].split(":")[2], r["name"], r["inputs"], opts)
    elif r["custom"]:
        made[r["urn"]] = pulumi.CustomResource(r["type"], r["name"], r["inputs"], opts)
    else:
        made[r["urn"]] = pulumi.ComponentResource(r["type"], r["name"], None, opts)
for i, (typ, ident) in enumerate(dump["reads"]):
    pulumi.CustomResource(typ, f"read-{i}", {}, pulumi.ResourceOptions(id=ident))
"""

REPLAY_CHILD = """\
import json, sys
from pathlib import Path
from devtools import bench_adopted as b
from program.offline import run_program
services = b.config()
run = run_program(services, stack="dev", main=Path(sys.argv[1]), cluster=b.cluster(services["services"]))
print(json.dumps({"error": run.error, "resources": len(run.resources)}))
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[float, dict[str, Any]]:
    import os

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    ).stdout
    seconds = time.perf_counter() - start
    result = json.loads(out.strip().splitlines()[-1])
    if result.get("error"):
        raise SystemExit(f"the program failed: {result['error']}")
    return seconds, result


def measure(repeat: int) -> tuple[float, float, int]:
    """(program seconds, replay seconds, resources): medians of fresh interpreters."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = str(Path(tmp) / "dump.json")
        replay = Path(tmp) / "replay.py"
        replay.write_text(REPLAY)
        program, replayed = [], []
        count, modules = 0, []
        for _ in range(repeat):
            seconds, result = _child(PROGRAM, dump)
            program.append(seconds)
            count, modules = result["resources"], result["modules"]
        env = {"REPLAY_DUMP": dump, "REPLAY_MODULES": json.dumps(modules)}
        for _ in range(repeat):
            seconds, result = _child(REPLAY_CHILD, str(replay), env=env)
            if result["resources"] != count:
                raise SystemExit(f"the replay registered {result['resources']} resources, the program {count}")
            replayed.append(seconds)
    return statistics.median(program), statistics.median(replayed), count


def planner_seconds() -> float:
    from migration.phases import Phase
    from migration.plan import plan
    from program.config import parse_config

    fleet = parse_config(config()).fleet()
    start = time.perf_counter()
    plan(fleet, dict.fromkeys(fleet.names, Phase.DISCOVERY))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    program, replay, count = measure(args.repeat)
    over = program / replay > TARGET
    print(
        f"adopted fleet of 200 at {PHASE}: {program:.2f} s, {count} resources, {program / replay:.2f} x the SDK's "
        f"floor for them ({replay:.2f} s replayed; target <= {TARGET:.1f}): {'OVER TARGET' if over else 'ok'}"
    )
    planned = planner_seconds()
    planner_over = planned > PLANNER_TARGET_S
    print(
        f"planner, 200 adopted services: {planned:.3f} s (target < {PLANNER_TARGET_S:.0f} s): "
        f"{'OVER TARGET' if planner_over else 'ok'}"
    )
    return 1 if (over or planner_over) else 0


if __name__ == "__main__":
    sys.exit(main())

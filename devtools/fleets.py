"""The benchmark's fleet: one call graph of 200 services that the stack, planner, checks and adopted
benchmarks (devtools/bench*.py) and the planner's tests all measure."""

from __future__ import annotations

from typing import Any


def fleet_of(n: int) -> list[dict[str, Any]]:
    """A gateway service and n - 1 more: a fifth in the mesh from the start, each calling two of twice as
    many migrating services, which call the rest, migrating too; owned by 20 teams, a namespace each.
    For 200: 40 front services, 80 migrating ones, 79 more (10 services a namespace)."""
    front = max(1, n // 5)
    middle = 2 * front
    back = max(1, n - 1 - front - middle)
    services: list[dict[str, Any]] = [{"name": "gw"}]
    services += [{"name": f"f{i}", "upstreams": [f"b{i}", f"b{(i + front) % middle}"]} for i in range(front)]
    services += [{"name": f"b{j}", "migrates": True, "upstreams": [f"c{j % back}"]} for j in range(middle)]
    services += [{"name": f"c{k}", "migrates": True} for k in range(back)]
    return [{**s, "namespace": f"team-{i % 20}"} for i, s in enumerate(services)]


# Nodes that hold the fleet at its peak (every migrating service's two versions, at permissive, and
# the platform's pods): 335 pods, 54 a node besides the DaemonSets (migration/capacity.py).
FLEET_NODES = {"instanceTypes": ["m5.xlarge"], "minSize": 7, "desiredSize": 7, "maxSize": 8}
FLEET = {"services": fleet_of(200), "gateway": {"service": "gw"}, "cluster": FLEET_NODES}

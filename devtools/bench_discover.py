"""`make discover` on a recorded 200-service cluster: how long it takes, and that it holds one log line
at a time (the memory it needs does not grow with the logs it reads).

The cluster (devtools/cluster.py) is served by a separate process on loopback, so the figures are
discover's own: its requests, its parsing, its memory (tracemalloc, Python allocations). Targets:
under 10 s; while reading the sidecar logs, at most the largest single log above what the inventory
holds (streaming keeps it to a line; reading a whole log into memory would still pass this bound
once, reading them all would not).

usage: python -m devtools.bench_discover [--services 200] [--per-call 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from ops import discover, kube

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--per-call", type=int, default=40)
    args = parser.parse_args(argv)
    cmd = [sys.executable, "-m", "devtools.cluster", "--services", str(args.services), "--per-call", str(args.per_call)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[-1].strip()
        client = kube.ReadOnlyKube(kube.Credentials(server=url))
        start = time.perf_counter()  # the timed run: what `make discover` does, without tracing
        inv = discover.inventory(client)
        seen = discover.read_sidecars(client, inv, 3600)
        result = discover.draft(inv, seen, ())
        seconds = time.perf_counter() - start
        requests = client.requests
        largest = _largest_log(client, inv)
        tracemalloc.start()  # the traced run: the memory reading the logs takes above the inventory
        inv = discover.inventory(client)
        after_inventory = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        discover.read_sidecars(client, inv, 3600)
        log_peak = tracemalloc.get_traced_memory()[1] - after_inventory
        tracemalloc.stop()
        client.close()
    finally:
        server.terminate()
        server.wait()
    over_time = seconds > TARGET_S
    over_memory = log_peak > largest
    print(
        f"discover, {args.services} services: {seconds:.2f} s, {requests} requests, {seen.pods_read} sidecar logs, "
        f"{seen.records} records, {len(result['services'])} services drafted (target < {TARGET_S:.0f} s): "
        f"{'OVER TARGET' if over_time else 'ok'}"
    )
    print(
        f"discover memory while reading logs: peak {log_peak / 1024:.0f} KiB above the inventory, the largest log "
        f"{largest / 1024:.0f} KiB (target: at most one log): {'OVER TARGET' if over_memory else 'ok'}"
    )
    return 1 if over_time or over_memory else 0


def _largest_log(client: kube.ReadOnlyKube, inv: discover.Inventory) -> int:
    """The size of the largest sidecar log (read once, line by line, before the measured run)."""
    sizes = [
        sum(len(line) for line in client.log_lines(ns, pod, discover.SIDECAR, 3600))
        for ns, pod, _, _ in inv.injected_pods
    ]
    return max(sizes, default=0)


if __name__ == "__main__":
    sys.exit(main())

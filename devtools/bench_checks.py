"""Benchmark of the check script (meshcheck/mesh_check.py) against local stubs: what a step's checks cost.

Issue 12's budget: a step's checks add at most 60 s to a default `up`. This measures the script's
part, as the Job runs it (the file alone, in a fresh interpreter, the expectation from a file), with
the default expectation of meshcheck/expectation.py (20 requests through the gateway, 3 plain-text
probes a service) pointed at stubs on loopback:

- a gateway that answers like fake-service through web to api, two versions of api (permissive);
- a service that answers plain text, and one that closes it as a strict sidecar does;
- a Kubernetes API answering with the recorded samples of tests/data/precheck (one sidecar log;
  callers outside the mesh left out, so the precheck passes).

It prints the median seconds of each check, then the worst case the default timeouts allow (each
check running to its whole budget, plus an allowance for starting two Job pods), and exits 1 when
the measured time is over TARGET_MEASURED or the worst case over BUDGET. Pulling the image and
scheduling the pods happen on the cluster and are not measured here.

usage: python -m devtools.bench_checks [--repeat 5] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshcheck import expectation
from meshcheck.expectation import ServiceSpec, Settings

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = ROOT / "tests" / "data" / "precheck"
BUDGET = 60.0  # seconds a step's checks may add to an `up` (issue 12)
JOB_START_ALLOWANCE = 15.0  # scheduling and starting two Job pods, image cached; not measured here
TARGET_MEASURED = 5.0  # both checks' passing run against the stubs


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: Callable[[_Quiet], None]) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(_Quiet):
        def do_GET(self) -> None:
            handler(self)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _closer() -> tuple[socket.socket, str]:
    """Accepts, reads the plain-text request, closes without a byte: a strict sidecar."""
    sock = socket.create_server(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(4096)

    threading.Thread(target=loop, daemon=True).start()
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/"


def start_stubs(latency: float) -> tuple[dict[str, str], Callable[[], None]]:
    count = [0]
    lock = threading.Lock()

    def gateway(h: _Quiet) -> None:
        with lock:
            count[0] += 1
            n = count[0]
        time.sleep(latency)
        api = "api (mesh)" if n % 2 else "api (non-mesh)"
        uri = "http://api.service.consul:9091"
        body = {
            "name": "web (mesh)",
            "code": 200,
            "upstream_calls": {uri: {"name": api, "uri": uri, "code": 200}},
        }
        h.answer(200, json.dumps(body).encode())

    def plain(h: _Quiet) -> None:
        h.answer(200, json.dumps({"name": "api (non-mesh)", "code": 200}).encode())

    pods = (SAMPLES / "api-pods.json").read_bytes()
    by_ip = json.loads((SAMPLES / "pods-by-ip.json").read_text())
    pod = "api-v2-7c9d8b6f5-k2x4p"
    log = "".join(
        line
        for line in (SAMPLES / f"{pod}.consul-dataplane.log").read_text().splitlines(keepends=True)
        if "10.0.2.14" not in line and "10.0.9.99" not in line
    )

    def kube(h: _Quiet) -> None:
        parts = urllib.parse.urlsplit(h.path)
        if parts.path == "/api/v1/namespaces/api/pods":
            h.answer(200, pods)
        elif parts.path == f"/api/v1/namespaces/api/pods/{pod}/log":
            h.answer(200, log.encode(), "text/plain")
        elif parts.path == "/api/v1/pods":
            ip = urllib.parse.parse_qs(parts.query)["fieldSelector"][0].removeprefix("status.podIP=")
            h.answer(200, json.dumps(by_ip[ip]).encode())
        else:
            h.answer(404, b"{}")

    servers = [_serve(gateway), _serve(plain), _serve(kube)]
    closer, closer_url = _closer()
    urls = {"gateway": servers[0][1] + "/", "plain": servers[1][1] + "/", "kube": servers[2][1], "closer": closer_url}

    def stop() -> None:
        for server, _ in servers:
            server.shutdown()
            server.server_close()
        closer.close()

    return urls, stop


def documents(urls: dict[str, str], token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The default expectations (permissive's postcheck, strict's precheck), aimed at the stubs."""
    settings = Settings(
        gateway_url=urls["gateway"], kubernetes={"url": urls["kube"], "token_file": token, "ca_file": None}
    )

    def phase(api_versions: dict[str, str], plaintext: bool) -> list[ServiceSpec]:
        return [
            ServiceSpec("api", "api", 9091, api_versions, (), plaintext),
            ServiceSpec("web", "web", 9091, {"v1": "web (mesh)"}, ("api",), False),
        ]

    permissive = phase({"v1": "api (non-mesh)", "v2": "api (mesh)"}, True)
    post = expectation.expectation(permissive, exposed="web", phase="permissive", settings=settings)
    for probe in post["postcheck"]["plaintext"]:
        probe["url"] = urls["plain"] if probe["expect"] == "accepted" else urls["closer"]
    pre = expectation.expectation(
        phase({"v2": "api (mesh)"}, False),
        exposed="web",
        phase="strict",
        previous=permissive,
        previous_phase="permissive",
        settings=settings,
    )
    return post, pre


def run_check(check: str, doc: dict[str, Any], workdir: Path) -> tuple[float, str]:
    """One run as in the Job: the script alone, a fresh interpreter; (seconds, its line)."""
    script = workdir / "mesh_check.py"
    script.write_text(expectation.SCRIPT.read_text())
    path = workdir / f"{check}.json"
    path.write_text(json.dumps(doc))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-I", "-B", str(script), check, "--expectation", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "MESH_CHECK_TERMINATION_LOG": ""},
    )
    seconds = time.perf_counter() - started
    line = result.stdout.strip()
    if result.returncode != 0:
        raise SystemExit(f"{check} failed against the stubs (exit {result.returncode}): {line} {result.stderr.strip()}")
    return seconds, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each gateway answer")
    args = parser.parse_args(argv)

    urls, stop = start_stubs(args.latency_ms / 1000)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            token = workdir / "token"
            token.write_text("bench\n")
            post, pre = documents(urls, str(token))
            times: dict[str, list[float]] = {"postcheck": [], "precheck": []}
            lines: dict[str, str] = {}
            for _ in range(args.repeat):
                for check, doc in (("postcheck", post), ("precheck", pre)):
                    seconds, lines[check] = run_check(check, doc, workdir)
                    times[check].append(seconds)
    finally:
        stop()

    gateway = post["postcheck"]["gateway"]
    probes = post["postcheck"]["plaintext"]
    post_s, pre_s = (statistics.median(times[c]) for c in ("postcheck", "precheck"))
    measured = post_s + pre_s
    s = Settings()
    worst = s.postcheck_seconds + s.precheck_seconds + JOB_START_ALLOWANCE
    print(f"check script against local stubs, median of {args.repeat}, gateway latency {args.latency_ms:g} ms:")
    print(
        f"  postcheck  {gateway['requests']} requests, {len(probes)} services x "
        f"{probes[0]['attempts']} plain-text probes   {post_s:6.2f} s"
    )
    print(f"  precheck   1 sidecar log, caller look-ups              {pre_s:6.2f} s")
    verdict = "ok" if measured <= TARGET_MEASURED else "OVER TARGET"
    print(f"  both{'':51}{measured:6.2f} s  (target {TARGET_MEASURED:g} s: {verdict})")
    print(f"  postcheck said: {lines['postcheck']}")
    print(f"  precheck said:  {lines['precheck']}")
    within = "ok" if worst <= BUDGET else "OVER BUDGET"
    print(
        f"worst case the default timeouts allow: postcheck {s.postcheck_seconds:g} s + precheck "
        f"{s.precheck_seconds:g} s + {JOB_START_ALLOWANCE:g} s to start two Job pods = {worst:g} s "
        f"(budget {BUDGET:g} s a step: {within})"
    )
    return 0 if measured <= TARGET_MEASURED and worst <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""The snapshot Jobs' program, run as a black box: `save`, `restore` and `token` against a loopback Consul,
STS, S3 and Kubernetes API, with the environment the CronJobs give it (issue 21 item 13).

The snapshot is built the way Consul builds one (hashicorp/consul snapshot/snapshot.go New: a gzipped
tar; snapshot/archive.go write: meta.json, state.bin, SHA256SUMS with `%x  %s` lines); the HTTP calls
are those of Consul's own client (api/snapshot.go: Save is GET /v1/snapshot, Restore PUT /v1/snapshot);
the S3 signature is checked against AWS's published Signature Version 4 examples.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from consulbackup import consul_snapshot as cs
from tests.conftest import ROOT

SCRIPT = ROOT / "consulbackup" / "consul_snapshot.py"  # run as the Job runs it: a file, alone

TOKEN = "snapshot-token-secret-id"
BOOTSTRAP = "bootstrap-token"


def consul_snapshot(index: int, state: bytes = b"raft state") -> bytes:
    """A snapshot as snapshot/archive.go write lays it out, gzipped as snapshot.go New does."""
    meta = json.dumps({"Version": 1, "ID": f"2-{index}-1", "Index": index, "Term": 2, "Size": len(state)}).encode()
    files = {"meta.json": meta, "state.bin": state}
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in [*files.items(), ("SHA256SUMS", sums)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


class World(http.server.ThreadingHTTPServer):
    """Consul (/v1/...), STS (POST /), S3 (/<bucket>/<key>, path style) and the Kubernetes API (/api/v1/...)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.snapshot = consul_snapshot(42)
        self.restored: list[bytes] = []
        self.objects: dict[str, bytes] = {}
        self.policies: dict[str, str] = {}
        self.tokens: dict[str, list[str]] = {BOOTSTRAP: ["global-management"]}
        self.secret_patches: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        w, path = cast(World, self.server), urllib.parse.urlparse(self.path)
        w.calls.append((self.command, path.path, dict(self.headers)))
        body = self._body()
        token = self.headers.get("X-Consul-Token")
        if path.path.startswith("/v1/"):
            rules = "".join(w.policies.get(p, "") for p in w.tokens.get(token or "", []))
            allowed = "global-management" in w.tokens.get(token or "", []) or 'acl = "write"' in rules
            if path.path == "/v1/snapshot":  # agent/consul/snapshot_endpoint.go: rule.Snapshot(), acl = write
                if not allowed:
                    return self._reply(403, b"Permission denied")
                if self.command == "GET":
                    return self._reply(200, w.snapshot, "application/octet-stream")
                w.restored.append(body)
                return self._reply(200)
            if path.path == "/v1/acl/token/self":
                return self._reply(200 if token in w.tokens else 403, b"{}")
            if token != BOOTSTRAP:
                return self._reply(403, b"Permission denied")
            if path.path.startswith("/v1/acl/policy/name/"):
                name = path.path.rsplit("/", 1)[-1]
                return self._reply(200, b"{}") if name in w.policies else self._reply(403, b"ACL not found")
            if path.path == "/v1/acl/policy":
                doc = json.loads(body)
                w.policies[doc["Name"]] = doc["Rules"]
                return self._reply(200, json.dumps({"ID": "p1", **doc}).encode())
            if path.path == "/v1/acl/token":
                doc = json.loads(body)
                w.tokens[TOKEN] = [p["Name"] for p in doc["Policies"]]
                return self._reply(200, json.dumps({"SecretID": TOKEN}).encode())
        if self.command == "POST" and path.path == "/":  # STS AssumeRoleWithWebIdentity
            form = urllib.parse.parse_qs(body.decode())
            assert form["Action"] == ["AssumeRoleWithWebIdentity"] and form["WebIdentityToken"] == ["web-identity"]
            xml = (
                '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA</AccessKeyId>"
                "<SecretAccessKey>secret</SecretAccessKey><SessionToken>session</SessionToken>"
                "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            )
            return self._reply(200, xml.encode(), "text/xml")
        if path.path.startswith("/api/v1/"):
            assert self.headers["Authorization"] == "Bearer api-token"
            w.secret_patches.append({"path": path.path, "type": self.headers["Content-Type"], **json.loads(body)})
            return self._reply(200, b"{}")
        if path.path.startswith("/snapshots/"):  # the bucket, path style
            assert self.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA/")
            assert self.headers["x-amz-security-token"] == "session"
            assert self.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
            key = path.path.removeprefix("/snapshots/")
            if self.command == "PUT":
                w.objects[key] = body
                return self._reply(200)
            if key:
                return (
                    self._reply(200, w.objects[key], "application/octet-stream")
                    if key in w.objects
                    else self._reply(404)
                )
            prefix = urllib.parse.parse_qs(path.query).get("prefix", [""])[0]
            keys = "".join(f"<Contents><Key>{k}</Key></Contents>" for k in sorted(w.objects) if k.startswith(prefix))
            xml = f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{keys}</ListBucketResult>'
            return self._reply(200, xml.encode(), "application/xml")
        return self._reply(404)

    do_GET = do_PUT = do_POST = do_PATCH = _handle


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[World, dict[str, str]]]:
    w = World()
    threading.Thread(target=w.serve_forever, daemon=True).start()
    files = {"token": TOKEN, "bootstrap": BOOTSTRAP, "web-identity": "web-identity", "sa/token": "api-token"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    env = {
        "PATH": os.environ["PATH"],
        "CONSUL_HTTP_ADDR": w.url,
        "CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "token"),
        "CONSUL_DATACENTER": "dc1",
        "SNAPSHOT_BUCKET": "snapshots",
        "SNAPSHOT_PREFIX": "consul/",
        "AWS_REGION": "us-west-2",
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/consul-mesh-migration/dev/snapshot-1",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "web-identity"),
        "S3_ENDPOINT": w.url,
        "STS_ENDPOINT": w.url,
        "KUBERNETES_API": w.url,
        "SERVICE_ACCOUNT_DIR": str(tmp_path / "sa"),
        "TOKEN_SECRET": "consul-snapshot-token",
        "TOKEN_NAMESPACE": "consul",
    }
    w.tokens[TOKEN] = ["consul-mesh-migration-snapshot"]
    w.policies["consul-mesh-migration-snapshot"] = 'acl = "write"'
    yield w, env
    w.shutdown()


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-B", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_snapshot_is_saved_verified_to_s3_and_restored_byte_for_byte(world):
    w, env = world
    saved = run("save", env)
    assert saved.returncode == 0, saved.stderr
    ((key, body),) = w.objects.items()
    assert key.startswith("consul/dc1/consul-") and key.endswith("-42.snap")  # UTC time, then the Raft index
    assert body == w.snapshot
    assert "saved snapshot at Raft index 42" in saved.stdout

    w.snapshot = b"not this one"
    restored = run("restore", env)  # no SNAPSHOT_KEY: the newest under the prefix
    assert restored.returncode == 0, restored.stderr
    assert w.restored == [body]
    assert f"restored snapshot s3://snapshots/{key} (Raft index 42)" in restored.stdout


def test_restore_takes_the_named_snapshot_and_the_newest_otherwise(world):
    w, env = world
    w.objects = {
        "consul/dc1/consul-20261201T000000Z-7.snap": consul_snapshot(7),
        "consul/dc1/consul-20261202T000000Z-9.snap": consul_snapshot(9),
        "consul/dc2/consul-20261203T000000Z-99.snap": consul_snapshot(99),  # another datacenter's
    }
    assert run("restore", env).returncode == 0
    assert cs.verify(w.restored[-1]) == 9
    named = run("restore", {**env, "SNAPSHOT_KEY": "consul/dc1/consul-20261201T000000Z-7.snap"})
    assert named.returncode == 0, named.stderr
    assert cs.verify(w.restored[-1]) == 7


def test_a_damaged_snapshot_is_never_uploaded_nor_restored(world):
    """What `consul snapshot save` checks too (archive.go read: hashes of meta.json and state.bin)."""
    w, env = world
    good = consul_snapshot(42)
    raw = gzip.decompress(good)
    w.snapshot = gzip.compress(raw.replace(b"raft state", b"raft stat!"))
    failed = run("save", env)
    assert failed.returncode == 1
    assert "save failed: snapshot integrity check failed for state.bin" in failed.stderr
    assert w.objects == {}
    w.objects["consul/dc1/consul-20261201T000000Z-1.snap"] = b"<html>not a snapshot</html>"
    failed = run("restore", env)
    assert failed.returncode == 1 and "not a Consul snapshot" in failed.stderr
    assert w.restored == []


def test_the_token_job_makes_a_token_that_can_only_snapshot_and_keeps_a_valid_one(world):
    w, env = world
    del w.tokens[TOKEN], w.policies["consul-mesh-migration-snapshot"]
    bootstrap = str(Path(env["CONSUL_HTTP_TOKEN_FILE"]).parent / "bootstrap")  # the Job mounts the bootstrap token
    made = run("token", {**env, "CONSUL_HTTP_TOKEN_FILE": bootstrap})
    assert made.returncode == 0, made.stderr
    assert w.policies == {"consul-mesh-migration-snapshot": 'acl = "write"'}  # acl/policy_authorizer.go Snapshot
    assert w.secret_patches == [
        {
            "path": "/api/v1/namespaces/consul/secrets/consul-snapshot-token",
            "type": "application/merge-patch+json",
            "stringData": {"token": TOKEN},
        }
    ]
    # The new token saves a snapshot; nothing else of Consul's would accept it.
    assert run("save", env).returncode == 0
    again = run("token", {**env, "CURRENT_TOKEN": TOKEN, "CONSUL_HTTP_TOKEN_FILE": bootstrap})
    assert again.returncode == 0 and "valid; nothing to do" in again.stdout
    assert len(w.secret_patches) == 1


def test_without_the_snapshot_permission_the_job_fails_with_consuls_answer(world):
    w, env = world
    w.tokens[TOKEN] = []
    failed = run("save", env)
    assert failed.returncode == 1
    assert "save failed: GET " in failed.stderr and "HTTP 403 Permission denied" in failed.stderr
    assert w.objects == {}


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "signature"),
    [
        # Amazon S3 API Reference, "Signature Version 4: examples" (header-based auth): GET Object,
        # with Range, and GET Bucket (list objects) with max-keys and prefix.
        (
            "GET",
            "/test.txt",
            {},
            {"Range": "bytes=0-9"},
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (
            "GET",
            "/",
            {"max-keys": "2", "prefix": "J"},
            {},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_s3_requests_are_signed_as_aws_documents(method, path, query, headers, signature):
    creds = cs.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "")
    now = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)
    empty = hashlib.sha256(b"").hexdigest()
    signed = cs.sign(method, "examplebucket.s3.amazonaws.com", path, query, headers, empty, creds, "us-east-1", now)
    assert signed["authorization"].endswith(f"Signature={signature}")
    assert "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request" in signed["authorization"]

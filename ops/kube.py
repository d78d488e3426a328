"""A read-only Kubernetes API client for the tools: list (paged) and read a container's log, nothing else.

It reads a kubeconfig the way kubectl does (`KUBECONFIG` or ~/.kube/config, a context, its cluster's
server and CA, and the user's token, token file, client certificate or exec plugin such as `aws eks
get-token`) and makes only GET requests: `list` of a resource across namespaces, page by page
(`limit` and `metadata.continue`, the API server's chunking), and `pods/log`, streamed line by line
so a tool holds one line of one log at a time. No write verb exists here, so a tool built on it
cannot change the cluster.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAGE = 500  # items per list request: the API server's chunking keeps each answer bounded


class KubeError(RuntimeError):
    """The cluster could not be read; str() is one line naming what failed."""


@dataclass(frozen=True)
class Resource:
    """A list endpoint: the group/version path and the plural resource name."""

    path: str  # "/api/v1" or "/apis/apps/v1"
    plural: str

    def url(self, namespace: str | None = None) -> str:
        return f"{self.path}/namespaces/{namespace}/{self.plural}" if namespace else f"{self.path}/{self.plural}"


DEPLOYMENTS = Resource("/apis/apps/v1", "deployments")
STATEFULSETS = Resource("/apis/apps/v1", "statefulsets")
SERVICES = Resource("/api/v1", "services")
ENDPOINTSLICES = Resource("/apis/discovery.k8s.io/v1", "endpointslices")
PODS = Resource("/api/v1", "pods")
JOBS = Resource("/apis/batch/v1", "jobs")


@dataclass
class Credentials:
    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return (base / os.path.expanduser(str(entry[key]))).read_bytes()
    return None


def _exec_token(spec: Mapping[str, Any]) -> str:
    """An exec credential plugin (client.authentication.k8s.io ExecCredential): its status.token."""
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    command = [str(spec["command"]), *(str(a) for a in spec.get("args") or [])]
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise KubeError(f"kubeconfig exec plugin {command[0]} failed: {e}") from None
    token = (json.loads(out).get("status") or {}).get("token")
    if not token:
        raise KubeError(f"kubeconfig exec plugin {command[0]} returned no token")
    return str(token)


def load_kubeconfig(path: str | None = None, context: str | None = None) -> Credentials:
    """The server and credentials of `context` (default: the current context) in the kubeconfig."""
    where = Path(os.path.expanduser(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"))
    try:
        config = yaml.safe_load(where.read_text()) or {}
    except OSError as e:
        raise KubeError(f"kubeconfig {where}: {e.strerror}") from None
    name = context or config.get("current-context")
    by_name = {
        kind: {e["name"]: e.get(kind[:-1], {}) for e in config.get(kind) or []}
        for kind in ("contexts", "clusters", "users")
    }
    if name not in by_name["contexts"]:
        raise KubeError(
            f"kubeconfig {where}: no context {name!r}; contexts: {', '.join(by_name['contexts']) or '(none)'}"
        )
    ctx = by_name["contexts"][name]
    cluster, user = by_name["clusters"].get(ctx.get("cluster"), {}), by_name["users"].get(ctx.get("user"), {})
    base = where.parent
    creds = Credentials(
        server=str(cluster.get("server", "")).rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_pem=_data_or_file(user, "client-certificate", base),
        key_pem=_data_or_file(user, "client-key", base),
    )
    if user.get("token"):
        creds.token = str(user["token"])
    elif user.get("tokenFile"):
        creds.token = Path(os.path.expanduser(user["tokenFile"])).read_text().strip()
    elif user.get("exec"):
        creds.token = _exec_token(user["exec"])
    elif user.get("username"):
        basic = base64.b64encode(f"{user['username']}:{user.get('password', '')}".encode()).decode()
        creds.headers["Authorization"] = f"Basic {basic}"
    if not creds.server:
        raise KubeError(f"kubeconfig {where}: context {name!r} has no cluster server")
    return creds


class ReadOnlyKube:
    """GET-only access to one cluster. One connection, reused."""

    def __init__(self, creds: Credentials, timeout: float = 30.0) -> None:
        self.creds = creds
        url = urllib.parse.urlsplit(creds.server)
        self._host, self._port = url.hostname or "", url.port
        self._prefix = url.path.rstrip("/")
        self._https = url.scheme == "https"
        self._timeout = timeout
        self._context = self._ssl_context() if self._https else None
        self._conn: http.client.HTTPConnection | None = None
        self.requests = 0  # every GET made: lists, pages and logs

    def _ssl_context(self) -> ssl.SSLContext:
        c = self.creds
        context = ssl.create_default_context(cadata=c.ca_pem.decode() if c.ca_pem else None)
        if c.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if c.cert_pem and c.key_pem:
            with tempfile.TemporaryDirectory() as d:  # ssl loads a client certificate from files only
                cert, key = Path(d, "cert.pem"), Path(d, "key.pem")
                cert.write_bytes(c.cert_pem)
                key.write_bytes(c.key_pem)
                key.chmod(0o600)
                context.load_cert_chain(cert, key)
        return context

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _get(self, path: str, query: Mapping[str, str]) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json", "User-Agent": "consul-mesh-migration-discover", **self.creds.headers}
        if self.creds.token:
            headers["Authorization"] = f"Bearer {self.creds.token}"
        target = f"{self._prefix}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            conn = self._connection()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
                continue
            except OSError as e:
                raise KubeError(f"GET {path}: {e}") from None
            self.requests += 1
            if response.status != 200:
                body = response.read()
                raise KubeError(f"GET {path}: HTTP {response.status} {_status_message(body)}")
            return response
        raise KubeError(f"GET {path}: no answer")

    def list(self, resource: Resource, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object of `resource`, page by page (items as the API server sends them)."""
        query = {"limit": str(PAGE)}
        while True:
            doc = json.loads(self._get(resource.url(namespace), query).read())
            yield from doc.get("items") or []
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return
            query = {"limit": str(PAGE), "continue": token}

    def log_lines(self, namespace: str, pod: str, container: str, since_seconds: int) -> Iterator[str]:
        """A container's log of the last `since_seconds`, one line at a time (the answer is streamed)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        response = self._get(path, {"container": container, "sinceSeconds": str(since_seconds)})
        done = False
        try:
            while line := response.readline():
                yield line.decode("utf-8", errors="replace")
            response.read()  # the end of the answer: the connection serves the next request
            done = True
        finally:
            if not done:  # the rest of the answer is still on the connection: drop it
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _status_message(body: bytes) -> str:
    """The message of a metav1 Status answer, else the start of the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    return str(doc.get("message") or doc.get("reason") or "") if isinstance(doc, dict) else ""

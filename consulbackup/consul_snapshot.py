"""Consul snapshots to S3, and back: the program of the snapshot Jobs (stock Python, standard library only).

    consul_snapshot.py token    make the snapshot token: a Consul policy `acl = "write"` (the one rule
                                taking and restoring a snapshot needs) and a token with it, written into
                                the Kubernetes Secret the Jobs mount. Runs with the bootstrap token.
    consul_snapshot.py save     GET /v1/snapshot, verify it, PUT it to s3://BUCKET/PREFIX<dc>/...snap
    consul_snapshot.py restore  GET SNAPSHOT_KEY (or the newest under the prefix) from S3, verify it,
                                PUT /v1/snapshot

What it reads is Consul's own format: a snapshot is a gzipped tar of meta.json, state.bin and
SHA256SUMS (hashicorp/consul snapshot/snapshot.go New, snapshot/archive.go write/read), fetched and
restored through /v1/snapshot (api/snapshot.go Save, Restore). AWS credentials come from IRSA (the
web identity token the EKS pod identity webhook mounts), exchanged at STS, and every S3 request is
signed with Signature Version 4.

Environment: CONSUL_HTTP_ADDR, CONSUL_CACERT, CONSUL_HTTP_TOKEN_FILE, CONSUL_DATACENTER; SNAPSHOT_BUCKET,
SNAPSHOT_PREFIX, AWS_REGION, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE; SNAPSHOT_KEY (restore);
TOKEN_SECRET, TOKEN_NAMESPACE, CURRENT_TOKEN (token). S3_ENDPOINT, STS_ENDPOINT and KUBERNETES_API
point elsewhere than AWS and the cluster (the tests' loopback servers).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import hmac
import io
import json
import os
import ssl
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

POLICY = "consul-mesh-migration-snapshot"
POLICY_RULES = 'acl = "write"'  # acl/policy_authorizer.go Snapshot: enforce(aclRule, AccessWrite), nothing else
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TIMEOUT = 60


class Failure(Exception):
    """A step that did not work; its message is the Job's last line."""


# --- HTTP ---------------------------------------------------------------------------------------


def _context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    return context


def _request(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None, ca: str | None = None
) -> bytes:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(
            req, timeout=TIMEOUT, context=_context(ca) if url.startswith("https") else None
        ) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip()[:300]
        raise Failure(f"{method} {url.split('?', maxsplit=1)[0]}: HTTP {e.code} {detail}") from None
    except urllib.error.URLError as e:
        raise Failure(f"{method} {url.split('?', maxsplit=1)[0]}: {e.reason}") from None


# --- Consul -------------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def consul(method: str, path: str, body: bytes | None = None) -> bytes:
    token = _read(os.environ["CONSUL_HTTP_TOKEN_FILE"])
    url = os.environ["CONSUL_HTTP_ADDR"].rstrip("/") + path
    return _request(method, url, {"X-Consul-Token": token}, body, os.environ.get("CONSUL_CACERT"))


def verify(snapshot: bytes) -> int:
    """The Raft index of a snapshot whose SHA256SUMS match its meta.json and state.bin (archive.go read)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(snapshot)), mode="r:") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    except (OSError, EOFError, tarfile.TarError) as e:
        raise Failure(f"not a Consul snapshot (a gzipped tar): {e}") from None
    if set(files) != {"meta.json", "state.bin", "SHA256SUMS"}:
        raise Failure(f"not a Consul snapshot: it holds {sorted(files)}")
    sums: dict[str, str] = {}
    for line in files["SHA256SUMS"].decode().splitlines():  # `%x  %s`: the digest, two spaces, the name
        digest, _, file = line.partition("  ")
        sums[file] = digest
    for name in ("meta.json", "state.bin"):
        if sums.get(name) != hashlib.sha256(files[name]).hexdigest():
            raise Failure(f"snapshot integrity check failed for {name}")
    return int(json.loads(files["meta.json"])["Index"])


# --- AWS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str


def assume_role() -> Credentials:
    """Exchange the pod's web identity token for the role's credentials (STS AssumeRoleWithWebIdentity)."""
    region = os.environ["AWS_REGION"]
    query = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": os.environ["AWS_ROLE_ARN"],
            "RoleSessionName": "consul-snapshot",
            "WebIdentityToken": _read(os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]),
        }
    )
    endpoint = os.environ.get("STS_ENDPOINT", f"https://sts.{region}.amazonaws.com")
    root = ET.fromstring(
        _request("POST", endpoint + "/", {"Content-Type": "application/x-www-form-urlencoded"}, query.encode())
    )
    found = {el.tag.rsplit("}", 1)[-1]: el.text or "" for el in root.iter()}
    return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_hash: str,
    creds: Credentials,
    region: str,
    now: datetime.datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The request's headers with a Signature Version 4 Authorization header (AWS SigV4 for S3, header form)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    if creds.token:
        signed["x-amz-security-token"] = creds.token
    names = sorted(signed)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(path, safe="/-_.~"),
            canonical_query,
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{creds.secret_key}".encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    credential = f"Credential={creds.access_key}/{scope}"
    signed["authorization"] = f"AWS4-HMAC-SHA256 {credential}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return signed


def s3(method: str, key: str, creds: Credentials, body: bytes = b"", query: dict[str, str] | None = None) -> bytes:
    region, bucket = os.environ["AWS_REGION"], os.environ["SNAPSHOT_BUCKET"]
    endpoint = os.environ.get("S3_ENDPOINT")
    if endpoint:  # path style
        parsed = urllib.parse.urlparse(endpoint)
        host, path, base = parsed.netloc, f"/{bucket}/{key}", f"{parsed.scheme}://{parsed.netloc}"
    else:  # virtual-hosted style
        host, path, base = (
            f"{bucket}.s3.{region}.amazonaws.com",
            f"/{key}",
            f"https://{bucket}.s3.{region}.amazonaws.com",
        )
    query = query or {}
    headers = sign(
        method,
        host,
        path,
        query,
        {},
        hashlib.sha256(body).hexdigest(),
        creds,
        region,
        datetime.datetime.now(datetime.UTC),
    )
    headers.pop("host")
    url = (
        base
        + urllib.parse.quote(path, safe="/-_.~")
        + ("?" + urllib.parse.urlencode(sorted(query.items())) if query else "")
    )
    return _request(method, url, headers, body or None)


def newest_key(creds: Credentials, prefix: str) -> str:
    """The newest snapshot under `prefix`: their names start with the UTC time, so the last in order."""
    keys: list[str] = []
    token = ""
    while True:
        query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
        root = ET.fromstring(s3("GET", "", creds, query=query))
        keys += [el.text or "" for el in root.iter() if el.tag.endswith("}Key")]
        token = next((el.text or "" for el in root.iter() if el.tag.endswith("}NextContinuationToken")), "")
        if not token:
            break
    snaps = sorted(k for k in keys if k.endswith(".snap"))
    if not snaps:
        raise Failure(f"no snapshot under s3://{os.environ['SNAPSHOT_BUCKET']}/{prefix}")
    return snaps[-1]


# --- the three commands -------------------------------------------------------------------------


def _prefix() -> str:
    return os.environ.get("SNAPSHOT_PREFIX", "") + os.environ["CONSUL_DATACENTER"] + "/"


def save() -> str:
    snapshot = consul("GET", "/v1/snapshot")
    index = verify(snapshot)
    now = datetime.datetime.now(datetime.UTC)
    key = f"{_prefix()}consul-{now:%Y%m%dT%H%M%SZ}-{index}.snap"
    s3("PUT", key, assume_role(), snapshot)
    return f"saved snapshot at Raft index {index} ({len(snapshot)} bytes) to s3://{os.environ['SNAPSHOT_BUCKET']}/{key}"


def restore() -> str:
    creds = assume_role()
    key = os.environ.get("SNAPSHOT_KEY") or newest_key(creds, _prefix())
    snapshot = s3("GET", key, creds)
    index = verify(snapshot)
    consul("PUT", "/v1/snapshot", snapshot)
    return f"restored snapshot s3://{os.environ['SNAPSHOT_BUCKET']}/{key} (Raft index {index})"


def token() -> str:
    """Create (or keep) the policy and the token, and store the token's SecretID in the Jobs' Secret."""
    current = os.environ.get("CURRENT_TOKEN", "").strip()
    if current:
        try:  # still valid: keep it (a rerun of this Job changes nothing)
            _request(
                "GET",
                os.environ["CONSUL_HTTP_ADDR"].rstrip("/") + "/v1/acl/token/self",
                {"X-Consul-Token": current},
                ca=os.environ.get("CONSUL_CACERT"),
            )
            return "the snapshot token in the Secret is valid; nothing to do"
        except Failure:
            pass
    try:
        consul("GET", f"/v1/acl/policy/name/{POLICY}")
    except Failure:
        body = {"Name": POLICY, "Rules": POLICY_RULES, "Description": "consul snapshot save and restore"}
        consul("PUT", "/v1/acl/policy", json.dumps(body).encode())
    body = {"Description": "consul-mesh-migration snapshots", "Policies": [{"Name": POLICY}]}
    secret_id = json.loads(consul("PUT", "/v1/acl/token", json.dumps(body).encode()))["SecretID"]
    _write_secret(secret_id)
    return f"created the snapshot token (policy {POLICY}) and stored it in Secret {os.environ['TOKEN_SECRET']}"


def _write_secret(value: str) -> None:
    api = os.environ.get("KUBERNETES_API", "https://kubernetes.default.svc")
    sa = os.environ.get("SERVICE_ACCOUNT_DIR", SA_DIR)
    name, namespace = os.environ["TOKEN_SECRET"], os.environ["TOKEN_NAMESPACE"]
    headers = {
        "Authorization": f"Bearer {_read(f'{sa}/token')}",
        "Content-Type": "application/merge-patch+json",
    }
    body = json.dumps({"stringData": {"token": value}}).encode()
    _request("PATCH", f"{api}/api/v1/namespaces/{namespace}/secrets/{name}", headers, body, f"{sa}/ca.crt")


COMMANDS = {"save": save, "restore": restore, "token": token}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"usage: {argv[0]} {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        print(COMMANDS[argv[1]]())
    except (Failure, KeyError, OSError) as e:
        what = f"missing setting {e}" if isinstance(e, KeyError) else str(e)
        print(f"{argv[1]} failed: {what}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

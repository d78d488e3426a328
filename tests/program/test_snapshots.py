"""Consul's state on a schedule to S3, and back (issue 21 item 13): what the stack renders for it.

The Jobs' program itself is run as a black box in tests/consulbackup/.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.snapshots import SCRIPT, bucket_prefix

SERVER_ACCOUNT = "system:serviceaccount:consul:{}"


@pytest.fixture(scope="module")
def dev(program):
    run = program({"consul": {"snapshots": {"schedule": "5 */6 * * *", "retentionDays": 14}}})
    assert run.error is None, run.error
    return run


def one(run, type_: str, name: str) -> Any:
    return run.one(type_, name)


def test_the_bucket_is_private_encrypted_tls_only_and_forgets_old_snapshots(dev, program):
    bucket = one(dev, "aws:s3/bucket:Bucket", "snapshots-bucket").inputs
    assert bucket["bucketPrefix"] == "cmm-dev-snap-"  # the stack's name in it: a policy can scope demo-* buckets
    assert bucket["forceDestroy"] is False  # a protected stack keeps its snapshots when destroyed
    assert bucket["tags"]["consul-mesh-migration:stack"] == "dev"
    block = one(dev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "snapshots-bucket").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    owner = one(dev, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "snapshots-bucket").inputs
    assert owner["rule"] == {"objectOwnership": "BucketOwnerEnforced"}  # no ACLs at all
    policy = json.loads(one(dev, "aws:s3/bucketPolicy:BucketPolicy", "snapshots-bucket").inputs["policy"])
    (tls,) = policy["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (rule,) = one(dev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "snapshots-bucket").inputs[
        "rules"
    ]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": "consul/"}
    assert rule["expiration"] == {"days": 14}
    demo = program({"cluster": {"protect": False}})
    assert one(demo, "aws:s3/bucket:Bucket", "snapshots-bucket").inputs["forceDestroy"] is True


def role_for(run, account: str) -> tuple[Any, dict[str, Any]]:
    issuer = f"oidc.eks.us-west-2.amazonaws.com/id/MOCK{sum(map(ord, 'cluster-eks'))}"
    for role in run.of_type("aws:iam/role:Role"):
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        if statement.get("Condition", {}).get("StringEquals", {}).get(f"{issuer}:sub") == SERVER_ACCOUNT.format(
            account
        ):
            (policy,) = [
                p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == f"{role.name}-id"
            ]
            return role, json.loads(policy.inputs["policy"])
    raise AssertionError(f"no role for {account}")


def test_the_saving_role_may_only_write_snapshots_and_the_restoring_one_only_read_them(dev):
    bucket = "arn:aws:mock:us-west-2:123456789012:bucket/snapshots-bucket"
    role, policy = role_for(dev, "consul-snapshot")
    assert policy["Statement"] == [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{bucket}/consul/*"]}]
    assert role.inputs["path"] == "/consul-mesh-migration/dev/" and role.inputs["namePrefix"] == "snapshot-"
    _, policy = role_for(dev, "consul-snapshot-restore")
    assert [s["Action"] for s in policy["Statement"]] == [["s3:GetObject"], ["s3:ListBucket"]]
    assert policy["Statement"][1]["Condition"] == {"StringLike": {"s3:prefix": ["consul/*"]}}


def pod_of(cron) -> dict[str, Any]:
    return cron.inputs["spec"]["jobTemplate"]["spec"]["template"]


def test_snapshots_are_saved_on_the_schedule_and_the_restore_waits_to_be_started(dev):
    save = one(dev, "kubernetes:batch/v1:CronJob", "snapshots-save").inputs["spec"]
    restore = one(dev, "kubernetes:batch/v1:CronJob", "snapshots-restore").inputs["spec"]
    assert save["schedule"] == "5 */6 * * *" and save.get("suspend") is False
    assert restore["suspend"] is True  # run by hand: kubectl create job --from=cronjob/consul-snapshot-restore
    assert save["concurrencyPolicy"] == "Forbid"
    for name, command, account in (
        ("save", "save", "consul-snapshot"),
        ("restore", "restore", "consul-snapshot-restore"),
    ):
        pod = pod_of(one(dev, "kubernetes:batch/v1:CronJob", f"snapshots-{name}"))
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert container["command"][-1] == command
        assert spec["serviceAccountName"] == account  # the subject its role trusts
        assert spec["automountServiceAccountToken"] is False  # no Kubernetes API token: it needs none
        assert pod["metadata"]["annotations"]["consul.hashicorp.com/connect-inject"] == "false"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert secrets == {"ca": "consul-ca-cert", "token": "consul-snapshot-token"}  # never the bootstrap token
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["CONSUL_HTTP_ADDR"] == "https://consul-server.consul.svc:8501"  # in the servers' certificate
        assert env["CONSUL_HTTP_TOKEN_FILE"] == "/consul/token/token"


def test_the_token_job_holds_the_bootstrap_token_and_may_write_one_secret_only(dev):
    job = one(dev, "kubernetes:batch/v1:Job", "snapshots-token").inputs["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in job["volumes"] if "secret" in v}
    assert secrets == {"consul-ca-cert", "consul-bootstrap-acl-token"}
    (rule,) = one(dev, "kubernetes:rbac.authorization.k8s.io/v1:Role", "snapshots-token").inputs["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["consul-snapshot-token"],
        "verbs": ["get", "patch"],
    }
    secret = one(dev, "kubernetes:core/v1:Secret", "snapshots-token")
    assert "data" not in secret.inputs and "stringData" not in secret.inputs  # the program never holds the token
    assert set(secret.options["ignoreChanges"]) == {"data", "stringData"}


def test_the_jobs_wait_for_consul_and_run_the_tested_script(dev):
    release = dev.one("kubernetes:helm.sh/v3:Release", "consul-release")
    for type_, name in (
        ("kubernetes:batch/v1:Job", "snapshots-token"),
        ("kubernetes:batch/v1:CronJob", "snapshots-save"),
    ):
        assert dev.depends_on(one(dev, type_, name), release)
    script = one(dev, "kubernetes:core/v1:ConfigMap", "snapshots-script").inputs["data"]["consul_snapshot.py"]
    assert script == SCRIPT.read_text()
    assert dev.outputs["snapshotBucket"].startswith("cmm-dev-snap-")


@pytest.mark.parametrize(
    ("stack", "prefix"),
    [
        ("demo-pr-12", "cmm-demo-pr-12-snap-"),
        ("Team_A.prod", "cmm-team-a-prod-snap-"),
        ("x" * 60, f"cmm-{'x' * 26}-snap-"),
    ],
)
def test_the_bucket_name_carries_the_stack_within_s3s_limits(stack, prefix):
    assert bucket_prefix(stack) == prefix
    assert len(prefix) <= 37  # S3 (the provider) appends 26 characters to at most 37


def test_a_cluster_the_program_does_not_run_gets_no_snapshots(program):
    local = program({}, stack="local")
    assert not [r for r in local.resources if "ConsulSnapshots" in r.type]
    off = program({"consul": {"snapshots": {"enabled": False}}})
    assert not off.of_type("aws:s3/bucket:Bucket")

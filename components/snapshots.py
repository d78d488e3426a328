"""Consul's state, kept: scheduled snapshots to S3 with a token that can do nothing else, and a restore.

    S3 bucket <cluster>-consul-snapshots-...   private, TLS only, objects expire after retentionDays
      ^ s3:PutObject (prefix only)             ^ s3:GetObject, s3:ListBucket (prefix only)
    role snapshot (IRSA, SA consul-snapshot)   role snapshot-restore (IRSA, SA consul-snapshot-restore)
      |                                          |
    CronJob consul-snapshot (schedule)         CronJob consul-snapshot-restore (suspended: run by hand)
      `-- GET /v1/snapshot, verified             `-- verified, PUT /v1/snapshot
            with the token in Secret consul-snapshot-token, made once by Job consul-snapshot-token
            (the bootstrap token creates policy `acl = "write"` and a token with it)

`acl = "write"` is the one rule Consul checks for a snapshot, saving or restoring
(acl/policy_authorizer.go Snapshot), and it is as strong as a management token: a snapshot holds
every ACL token. So the token lives only in its Secret, the bucket only lets the two roles in, and
nothing is public. The Jobs' program is consulbackup/consul_snapshot.py (standard library only).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from .annotations import INJECT, IRSA_ROLE_ARN
from .cluster import EksCluster, irsa_trust_policy
from .consul import Consul
from .consul_values import BOOTSTRAP_TOKEN_SECRET, CA_SECRET
from .pod_security import NOBODY, restricted_container, restricted_pod

SCRIPT = Path(__file__).resolve().parent.parent / "consulbackup" / "consul_snapshot.py"
SCRIPT_KEY = "consul_snapshot.py"
MOUNT = "/snapshot"
SAVE_ACCOUNT = "consul-snapshot"
RESTORE_ACCOUNT = "consul-snapshot-restore"
TOKEN_ACCOUNT = "consul-snapshot-token"
TOKEN_SECRET = "consul-snapshot-token"  # the token with `acl = "write"`, written by the token Job
RESTORE_CONFIG = "consul-snapshot-restore"  # optional ConfigMap: `key`, the snapshot to restore
PREFIX = "consul/"  # objects: consul/<datacenter>/consul-<UTC time>-<Raft index>.snap
LABELS = {"app.kubernetes.io/name": "consul-snapshot", "app.kubernetes.io/part-of": "consul-mesh-migration"}


@dataclass
class ConsulSnapshotsArgs:
    cluster: EksCluster  # its OIDC provider (IRSA), region, partition, IAM naming, protection
    consul: Consul  # its namespace, datacenter, release and Secrets
    image: str  # stock Python (versions.checkImage)
    schedule: str
    retention_days: int
    protect: bool  # a protected stack keeps its snapshots when destroyed (no force_destroy)


def bucket_prefix(stack: str) -> str:
    """cmm-<stack>-snap-: the stack in the name (a policy can scope demo-* buckets), within S3's 37
    characters for a prefix, in the letters a bucket name takes."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", stack.lower())).strip("-")[:26].rstrip("-")
    return f"cmm-{name or 'stack'}-snap-"


def save_policy(bucket_arn: str) -> str:
    """Write snapshots under the prefix; nothing else (not even read them back)."""
    statement = {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{bucket_arn}/{PREFIX}*"]}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def restore_policy(bucket_arn: str) -> str:
    """Read snapshots under the prefix, and list them to find the newest."""
    statements = [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket_arn}/{PREFIX}*"]},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{PREFIX}*"]}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def tls_only_policy(bucket_arn: str) -> str:
    statement = {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class ConsulSnapshots(pulumi.ComponentResource):
    """The bucket and its two roles, the token Job, and the save and restore CronJobs in Consul's namespace.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    bucket: aws.s3.Bucket
    save: k8s.batch.v1.CronJob
    restore: k8s.batch.v1.CronJob

    def __init__(self, name: str, args: ConsulSnapshotsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:snapshots:ConsulSnapshots", name, None, opts)
        self._name, self._args = name, args
        assert args.consul.release is not None  # snapshots are of the servers the program installs
        self._release = args.consul.release
        self.bucket = self._bucket()
        self._role("snapshot", SAVE_ACCOUNT, save_policy)
        self._role("snapshot-restore", RESTORE_ACCOUNT, restore_policy)
        script = SCRIPT.read_text()
        self._script_hash = hashlib.sha256(script.encode()).hexdigest()[:16]
        ns = args.consul.namespace
        after_consul = pulumi.ResourceOptions(parent=self, depends_on=[self._release])
        self._script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata={"name": "consul-snapshot", "namespace": ns},
            data={SCRIPT_KEY: script},
            opts=after_consul,
        )
        token = self._token_job()
        self.save = self._cron("save", SAVE_ACCOUNT, schedule=args.schedule, after=token)
        self.restore = self._cron("restore", RESTORE_ACCOUNT, schedule=args.schedule, after=token)
        self.register_outputs({"bucket": self.bucket.bucket})

    def _bucket(self) -> aws.s3.Bucket:
        """Private (owner-enforced, public access blocked), encrypted, TLS only, snapshots expiring."""
        name, args = self._name, self._args
        iam = args.cluster.iam
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=bucket_prefix(iam.stack),
            force_destroy=not args.protect,
            tags=iam.tags,
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-bucket",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-bucket",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-bucket",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-bucket",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-snapshots",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=PREFIX),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.retention_days),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=1
                    ),
                )
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(f"{name}-bucket", bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy), opts=child)
        return bucket

    def _role(self, what: str, account: str, policy: object) -> aws.iam.Role:
        name, args = self._name, self._args
        cluster, ns = args.cluster, args.consul.namespace
        role = aws.iam.Role(
            f"{name}-{what}",
            assume_role_policy=irsa_trust_policy(cluster.oidc_provider_arn, cluster.oidc_issuer, ns, account),
            **cluster.iam.role(what),
            opts=cluster.iam.opts(self),
        )
        aws.iam.RolePolicy(
            f"{name}-{what}",
            role=role.id,
            policy=self.bucket.arn.apply(policy),  # type: ignore[arg-type]
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.core.v1.ServiceAccount(
            f"{name}-{what}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=account, namespace=ns, annotations={IRSA_ROLE_ARN: role.arn}),
            automount_service_account_token=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._release]),
        )
        return role

    def _token_job(self) -> k8s.batch.v1.Job:
        """Once: the snapshot token, into a Secret the program makes empty and never writes again."""
        name, args = self._name, self._args
        ns = args.consul.namespace
        after_consul = pulumi.ResourceOptions(parent=self, depends_on=[self._release])
        secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_SECRET, namespace=ns),
            type="Opaque",  # empty: the Job adds the key `token`
            # The Job writes the token; the program keeps its hands off it (and out of its state).
            opts=pulumi.ResourceOptions.merge(
                after_consul, pulumi.ResourceOptions(ignore_changes=["data", "stringData"])
            ),
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_ACCOUNT, namespace=ns),
            opts=after_consul,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_ACCOUNT, namespace=ns),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["secrets"], resource_names=[TOKEN_SECRET], verbs=["get", "patch"]
                )
            ],
            opts=after_consul,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_ACCOUNT, namespace=ns),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=TOKEN_ACCOUNT),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=TOKEN_ACCOUNT, namespace=ns)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, account]),
        )
        env = [
            *self._consul_env(),
            k8s.core.v1.EnvVarArgs(name="CONSUL_HTTP_TOKEN_FILE", value="/consul/bootstrap/token"),
            k8s.core.v1.EnvVarArgs(name="TOKEN_SECRET", value=TOKEN_SECRET),
            k8s.core.v1.EnvVarArgs(name="TOKEN_NAMESPACE", value=ns),
            k8s.core.v1.EnvVarArgs(
                name="CURRENT_TOKEN",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=TOKEN_SECRET, key="token", optional=True)
                ),
            ),
        ]
        bootstrap = ("bootstrap", BOOTSTRAP_TOKEN_SECRET, "/consul/bootstrap")
        pod = self._pod("token", TOKEN_ACCOUNT, env, secrets=[bootstrap], automount=True)
        return k8s.batch.v1.Job(
            f"{name}-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TOKEN_ACCOUNT, namespace=ns, labels=LABELS),
            spec=k8s.batch.v1.JobSpecArgs(backoff_limit=3, active_deadline_seconds=300, template=pod),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, binding, self._script]),
        )

    def _cron(self, command: str, account: str, schedule: str, after: k8s.batch.v1.Job) -> k8s.batch.v1.CronJob:
        """`save` on the schedule; `restore` suspended, started by hand (docs/operations/consul-state.md)."""
        name, args = self._name, self._args
        ns = args.consul.namespace
        env = [
            *self._consul_env(),
            k8s.core.v1.EnvVarArgs(name="CONSUL_HTTP_TOKEN_FILE", value="/consul/token/token"),
            k8s.core.v1.EnvVarArgs(name="SNAPSHOT_BUCKET", value=self.bucket.bucket),
            k8s.core.v1.EnvVarArgs(name="SNAPSHOT_PREFIX", value=PREFIX),
            k8s.core.v1.EnvVarArgs(name="AWS_REGION", value=args.cluster.region),
        ]
        if command == "restore":
            env.append(
                k8s.core.v1.EnvVarArgs(
                    name="SNAPSHOT_KEY",
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        config_map_key_ref=k8s.core.v1.ConfigMapKeySelectorArgs(
                            name=RESTORE_CONFIG, key="key", optional=True
                        )
                    ),
                )
            )
        # EKS's pod identity webhook adds AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (the account's role).
        pod = self._pod(command, account, env, secrets=[("token", TOKEN_SECRET, "/consul/token")])
        return k8s.batch.v1.CronJob(
            f"{name}-{command}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=account, namespace=ns, labels=LABELS),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=schedule,
                suspend=command == "restore",
                concurrency_policy="Forbid",
                successful_jobs_history_limit=3,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(
                    spec=k8s.batch.v1.JobSpecArgs(backoff_limit=2, active_deadline_seconds=600, template=pod)
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[after]),
        )

    def _consul_env(self) -> list[k8s.core.v1.EnvVarArgs]:
        consul = self._args.consul
        return [
            k8s.core.v1.EnvVarArgs(name="CONSUL_HTTP_ADDR", value=f"https://consul-server.{consul.namespace}.svc:8501"),
            k8s.core.v1.EnvVarArgs(name="CONSUL_CACERT", value="/consul/ca/tls.crt"),
            k8s.core.v1.EnvVarArgs(name="CONSUL_DATACENTER", value=consul.datacenter),
        ]

    def _pod(
        self,
        command: str,
        account: str,
        env: list[k8s.core.v1.EnvVarArgs],
        secrets: list[tuple[str, str, str]],
        automount: bool = False,
    ) -> k8s.core.v1.PodTemplateSpecArgs:
        """The script in stock Python, as nobody, read-only, no capabilities, outside the mesh. Only the
        token Job talks to the Kubernetes API (its one Secret), so only it mounts an API token."""
        mounts = [k8s.core.v1.VolumeMountArgs(name="script", mount_path=MOUNT, read_only=True)]
        volumes = [
            k8s.core.v1.VolumeArgs(
                name="script",
                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name="consul-snapshot", default_mode=0o444),
            )
        ]
        for volume, secret, path in [("ca", CA_SECRET, "/consul/ca"), *secrets]:
            mounts.append(k8s.core.v1.VolumeMountArgs(name=volume, mount_path=path, read_only=True))
            volumes.append(
                k8s.core.v1.VolumeArgs(
                    name=volume, secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=secret, default_mode=0o440)
                )
            )
        container = k8s.core.v1.ContainerArgs(
            name=command,
            image=self._args.image,
            command=["python3", "-B", f"{MOUNT}/{SCRIPT_KEY}", command],
            env=env,
            volume_mounts=mounts,
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "512Mi"}
            ),
            termination_message_policy="FallbackToLogsOnError",
            security_context=restricted_container(),
        )
        return k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                annotations={INJECT: "false", "consul-mesh-migration/script": self._script_hash}
            ),
            spec=k8s.core.v1.PodSpecArgs(
                service_account_name=account,
                automount_service_account_token=automount,
                restart_policy="Never",
                security_context=restricted_pod(NOBODY, fs_group=NOBODY),  # the mounted Secrets readable
                containers=[container],
                volumes=volumes,
            ),
        )

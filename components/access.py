"""Who may use the cluster, and how much: three levels, each an EKS access entry. Plain data, no Pulumi.

    level     whole cluster                                  namespaces given
    admin     AmazonEKSClusterAdminPolicy                    AmazonEKSAdminPolicy in them
    deploy    AmazonEKSClusterAdminPolicy                    AmazonEKSEditPolicy in them
    preview   group PREVIEW_GROUP -> the preview ClusterRole AmazonEKSViewPolicy in them

`deploy` is cluster admin because `pulumi up` installs Helm charts that create CRDs, ClusterRoles and
webhooks, and RBAC lets only a principal that holds a permission grant it (escalation prevention).
`preview` reads exactly the kinds the program manages or reads (PREVIEW_RULES), with get/list/watch
only: never Secrets (so never a Helm release's state, which Helm keeps in Secrets), pods, their logs,
exec/attach/port-forward or service account tokens. AmazonEKSViewPolicy is not used cluster-wide: it
has no custom resources (a refresh of ServiceDefaults or a Gateway would be Forbidden) and it reads
every pod and pod log (EKS User Guide, access-policy-reference: AmazonEKSViewPolicy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["admin", "deploy", "preview"]
LEVELS: tuple[Level, ...] = ("admin", "deploy", "preview")
PREVIEW_GROUP = "consul-mesh-migration:preview"
PREVIEW_ROLE = "consul-mesh-migration-preview"

_CLUSTER_POLICY = {"admin": "AmazonEKSClusterAdminPolicy", "deploy": "AmazonEKSClusterAdminPolicy"}
_NAMESPACE_POLICY = {"admin": "AmazonEKSAdminPolicy", "deploy": "AmazonEKSEditPolicy", "preview": "AmazonEKSViewPolicy"}

# (API group, resources): every kind the program creates, patches or reads, on any platform.
# tests/program/test_access.py holds this against every resource the program renders or reads: the
# default stacks, a team's own workloads and destinations outside the mesh.
PREVIEW_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("configmaps", "namespaces", "serviceaccounts", "services")),
    ("apps", ("deployments", "statefulsets")),  # statefulsets: a team's own, read and patched
    ("batch", ("jobs", "cronjobs")),
    ("policy", ("poddisruptionbudgets",)),
    ("rbac.authorization.k8s.io", ("clusterroles", "clusterrolebindings", "roles", "rolebindings")),
    ("scheduling.k8s.io", ("priorityclasses",)),
    ("storage.k8s.io", ("storageclasses",)),
    (
        "consul.hashicorp.com",
        (
            "meshes",
            "proxydefaults",
            "servicedefaults",
            "serviceintentions",
            "routetimeoutfilters",
            "registrations",  # the destinations outside the mesh
            "terminatinggateways",
        ),
    ),
    ("gateway.networking.k8s.io", ("gateways", "httproutes")),
)
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Grant:
    """One principal's access. `namespaces` empty: the whole cluster."""

    principal_arn: str
    level: Level
    namespaces: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """Account and role or user name, so that reordering or a level change replaces no entry."""
        return principal_key(self.principal_arn)

    @property
    def policy(self) -> str | None:
        """The EKS access policy (its name) this grant is associated with; None: Kubernetes RBAC only."""
        return _NAMESPACE_POLICY[self.level] if self.namespaces else _CLUSTER_POLICY.get(self.level)

    @property
    def groups(self) -> tuple[str, ...]:
        """Kubernetes groups of the entry: the preview ClusterRole's, for a cluster-wide preview."""
        return (PREVIEW_GROUP,) if self.level == "preview" and not self.namespaces else ()

    @property
    def writes(self) -> bool:
        """Whether this principal can run `pulumi up`: the Kubernetes provider waits for these."""
        return self.level in ("admin", "deploy") and not self.namespaces


def principal_key(arn: str) -> str:
    account, name = arn.split(":")[4], arn.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{account}-{name}")


def policy_arn(partition: str, policy: str) -> str:
    return f"arn:{partition}:eks::aws:cluster-access-policy/{policy}"

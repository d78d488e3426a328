"""How every IAM role and policy of a stack is named, tagged and bounded, so that a policy can scope them.

    arn:aws:iam::<account>:role/consul-mesh-migration/<stack>/<what>-<unique suffix>
                                 `------------- path --------'`- name prefix -'

with the tags in `Iam.tags` and, when `cluster.permissionsBoundaryArn` is set, that permissions
boundary. The demo role's policy (docs/reference/security.md) can then allow creating only roles on
its stacks' path, with the stack tag and the boundary.

A role's path and name are fixed at creation: changing them replaces the role, and with it whatever
takes the role's ARN (the node role: the node group; an IRSA role: the pods that hold its ARN until
they restart; EKS's cluster role: the cluster). So both are `ignore_changes`: a role that exists
keeps its name, tags and boundary are set on it in place, and only a role created from now on (a new
stack, or one that is replaced for another reason) is named this way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi

PROJECT = "consul-mesh-migration"
TAG_PREFIX = f"{PROJECT}:"
NAMING = ["path", "namePrefix"]  # set at creation only: see the module docstring


@dataclass(frozen=True)
class Iam:
    stack: str
    cluster_name: str
    boundary: str | None = None  # a managed policy ARN

    @property
    def tags(self) -> dict[str, str]:
        return {
            f"{TAG_PREFIX}project": PROJECT,
            f"{TAG_PREFIX}stack": self.stack,
            f"{TAG_PREFIX}cluster": self.cluster_name,
        }

    @property
    def path(self) -> str:
        """/consul-mesh-migration/<stack>/: IAM paths take letters, digits and _+=,.@- between slashes."""
        return f"/{PROJECT}/{re.sub(r'[^A-Za-z0-9_+=,.@-]', '-', self.stack)[:400]}/"

    def role(self, what: str) -> dict[str, Any]:
        """Keyword arguments for an aws.iam.Role (with `opts()`)."""
        return {
            "path": self.path,
            "name_prefix": f"{what}-",
            "tags": self.tags,
            "permissions_boundary": self.boundary,
        }

    def policy(self, what: str) -> dict[str, Any]:
        """Keyword arguments for an aws.iam.Policy (with `opts()`)."""
        return {"path": self.path, "name_prefix": f"{what}-", "tags": self.tags}

    def opts(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, ignore_changes=NAMING, **kwargs)

    def transform(self, args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        """The same for the role pulumi-eks creates inside its component (its EKS service role)."""
        if args.type_ != "aws:iam/role:Role":
            return None
        props = {**args.props, "path": self.path, "namePrefix": "eks-cluster-"}
        if self.boundary:
            props["permissionsBoundary"] = self.boundary
        opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(ignore_changes=NAMING))
        return pulumi.ResourceTransformResult(props=props, opts=opts)

"""The AWS Load Balancer Controller: its IAM role (IRSA) and its Helm release in kube-system.

The chart's Service mutator webhook is turned off (see `chart_values`), so the controller claims a
LoadBalancer Service by its annotations only: every load balancer this stack causes carries
`aws-load-balancer-type: external` and `aws-load-balancer-nlb-target-type: ip`
(consul_values.nlb_annotations; the policy pack's `load-balancers-claimed-by-annotations` holds it).

Everything that creates a Service still depends on `release` (ClusterTarget.ready), for `pulumi
destroy`: the controller must outlive the load balancers it has to release. Deleting a Service waits
for the controller's finalizer (service.k8s.aws/resources), which deletes the NLB; with the
controller gone first the Service never goes and the NLB, its security groups and ENIs are left
behind, blocking the subnets and the VPC. So Services and their load balancers go first, then the
controller, then the nodes, the cluster and the VPC. The release waits for its pods (Helm's wait, no
skip_await), so a Service created after it is reconciled at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from .annotations import IRSA_ROLE_ARN
from .cluster import EksCluster, irsa_trust_policy
from .lb_controller_policy import controller_policy_json

CHART = "aws-load-balancer-controller"
CHART_REPO = "https://aws.github.io/eks-charts"
RELEASE_NAME = "aws-load-balancer-controller"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"  # the subject the role trusts; the chart must use exactly this


@dataclass
class LoadBalancerControllerArgs:
    # The cluster whole (as pulumi-eks's Addon takes it): its name, region, partition, VPC and OIDC
    # provider for the role's trust, and the node group its pods run on. Its Kubernetes provider
    # comes through opts.
    cluster: EksCluster
    chart_version: str


def chart_values(
    cluster_name: pulumi.Input[str], region: str, vpc_id: pulumi.Input[str], role_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """Region and VPC are given because pods cannot reach the instance metadata (IMDSv2 hop limit 1)."""
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "serviceAccount": {
            "create": True,
            "name": SERVICE_ACCOUNT,
            "annotations": {IRSA_ROLE_ARN: role_arn},
        },
        # Reuse the webhook's TLS Secret on upgrade instead of a new CA on every values change.
        "keepTLSSecret": True,
        # Off: with it on (chart default, operations CREATE) every new LoadBalancer Service gets
        # spec.loadBalancerClass service.k8s.aws/nlb (webhooks/core/service_mutator.go MutateCreate).
        # consul-k8s v2.0.3 rewrites its gateway Service's spec on every reconcile without that field
        # (api-gateway/gatekeeper/service.go mergeServiceInto: existing.Spec = desired.Spec); the API
        # server refuses the update, loadBalancerClass being immutable, and the gateway is never
        # Programmed (hashicorp/consul-k8s#3934). Adding UPDATE to the webhook's operations would
        # keep the class, but with failurePolicy Fail every Service update in the cluster would then
        # fail while the controller is down, and consul-k8s writes that Service on every reconcile.
        # Without a class the controller claims a Service by its annotations instead
        # (pkg/service/service_utils.go IsServiceSupported): nlb_annotations() on every one.
        "enableServiceMutatorWebhook": False,
    }


class LoadBalancerController(pulumi.ComponentResource):
    """The controller's IAM policy and IRSA role, and its Helm release on the cluster's nodes.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    release: k8s.helm.v3.Release
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:lb_controller:LoadBalancerController", name, None, opts)
        cluster = args.cluster
        child = pulumi.ResourceOptions(parent=self)
        policy = aws.iam.Policy(
            f"{name}-policy",
            description="AWS Load Balancer Controller: the project's official policy, action for action",
            policy=controller_policy_json(cluster.partition),
            **cluster.iam.policy("lb-controller"),
            opts=cluster.iam.opts(self),
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=irsa_trust_policy(
                cluster.oidc_provider_arn, cluster.oidc_issuer, NAMESPACE, SERVICE_ACCOUNT
            ),
            **cluster.iam.role("lb-controller"),
            opts=cluster.iam.opts(self),
        )
        attachment = aws.iam.RolePolicyAttachment(f"{name}-policy", role=role.name, policy_arn=policy.arn, opts=child)
        self.role_arn = role.arn
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=RELEASE_NAME,
                chart=CHART,
                version=args.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
                namespace=NAMESPACE,
                values=chart_values(cluster.cluster_name, cluster.region, cluster.vpc_id, role.arn),
                timeout=600,  # image pull and two replicas on fresh nodes
            ),
            # On the nodes its pods run on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, *cluster.node_groups]),
        )
        self.register_outputs({"roleArn": self.role_arn})

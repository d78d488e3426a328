"""EKS for platform eks: the control plane, managed node groups, EBS volumes, and the Kubernetes provider.

- Access: authentication mode API (access entries, no aws-auth ConfigMap), every entry from config
  (components/access.py: admin, deploy, preview), the same whoever runs the program. A cluster created
  with entries in config gets no creator entry from EKS (pulumi-eks hard-codes
  bootstrapClusterCreatorAdminPermissions true; a transform sets it false on its aws.eks.Cluster, and
  pulumi-eks's ignoreChanges keeps clusters created before as they are). An entry that already exists
  on the cluster (EKS's creator entry of an older cluster) is adopted: imported, then managed.
- Workload identity: IRSA, through the cluster's IAM OIDC provider. Every AWS-facing workload (the
  EBS CSI driver here, the load balancer controller) gets its own role whose trust names one service
  account. Chosen over EKS Pod Identity because it needs no agent add-on to pin and keep in step
  with the cluster, and both charts take it as a plain service account annotation.
- Nodes: private subnets, IMDSv2 required with a hop limit of 1 so that pods cannot reach the
  node's instance credentials, encrypted root volumes, at the control plane's Kubernetes version.
  On-Demand or Spot capacity: a Spot group lists several instance types of one size, and EKS
  launches a replacement for a Spot node at risk of interruption before it drains that node
  (capacity rebalancing). Consul's servers never run on Spot: with Spot nodes an on-demand group of
  one node per server holds them.
- Control-plane logs go to /aws/eks/<name>/cluster, a log group the stack owns (EKS would create it
  with no retention, and nothing would delete it).
- CoreDNS: pulumi-eks's own add-on is off; components/dns.py owns the `coredns` add-on and its Corefile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from .access import PREVIEW_GROUP, PREVIEW_ROLE, PREVIEW_RULES, READ_VERBS, Grant, policy_arn
from .annotations import IS_DEFAULT_CLASS
from .iam import Iam
from .network import Network

EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
DEFAULT_STORAGE_CLASS = "gp3"
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy")
# The Consul servers' on-demand nodes (with SPOT). 2 vCPU, 2 GiB, 11 pods: the node's 4 DaemonSet pods and
# a server (100m, 200Mi) leave room for 6 more; the server's priority class preempts them if need be.
SERVER_INSTANCE_TYPES = ("t3.small",)
_EKS_NAME_MAX = 100


def eks_cluster_name(project: str, stack: str) -> str:
    """`<project>-<stack>` as a valid EKS cluster name: letters, digits, '-' and '_', at most 100 characters."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{project}-{stack}").lstrip("-_")
    return name[:_EKS_NAME_MAX] or "cluster"


def irsa_trust_policy(
    oidc_provider_arn: pulumi.Input[str], oidc_issuer: pulumi.Input[str], namespace: str, service_account: str
) -> pulumi.Output[str]:
    """A role trust policy that only the one Kubernetes service account of this cluster can assume."""

    def document(args: list[str]) -> str:
        provider_arn, issuer = args
        statement = {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{issuer}:aud": "sts.amazonaws.com",
                }
            },
        }
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    return pulumi.Output.all(oidc_provider_arn, oidc_issuer).apply(document)


def _service_trust_policy(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@dataclass
class EksClusterArgs:
    cluster_name: str  # the physical name; the subnets carry it in their cluster tag
    kubernetes_version: pulumi.Input[str]  # the control plane's and every node group's
    network: Network  # the VPC and its subnets: the control plane in both, the nodes in the private ones
    instance_types: list[str]  # with SPOT, several of one size: more capacity pools, same pods per node
    capacity_type: Literal["ON_DEMAND", "SPOT"]
    min_size: int
    desired_size: int
    max_size: int
    grants: list[Grant]  # everyone with access, from config alone
    public_access_cidrs: list[str]
    log_types: list[str]
    log_retention_days: int
    service_cidr: str
    ebs_csi_addon_version: str
    kube_proxy_addon_version: str
    vpc_cni_addon_version: pulumi.Input[str]
    protect: bool  # guards the cluster and its secrets key against deletion and replacement
    iam: Iam
    server_nodes: int = 0  # an on-demand group of this many nodes for Consul's servers (with SPOT)
    node_volume_size: int = 30


RBAC = "rbac.authorization.k8s.io"
CONTROL_PLANE_LOG_GROUP = "/aws/eks/{}/cluster"  # EKS User Guide, control-plane-logs: the group EKS writes to


def adopted(found: Sequence[str] | None, wanted: str) -> str | None:
    """`wanted` as an import ID when a live read found it (it exists outside this stack's state, or in it:
    for a resource already in state the import option is a no-op, pulumi step_generator isImport)."""
    return wanted if wanted in (found or []) else None


class EksCluster(pulumi.ComponentResource):
    cluster: eks.Cluster
    node_group: eks.ManagedNodeGroup
    node_groups: list[eks.ManagedNodeGroup]  # the general one first; with SPOT, the servers' after it
    ebs_csi_addon: aws.eks.Addon
    default_storage_class: k8s.storage.v1.StorageClass
    provider: k8s.Provider  # the only way Kubernetes resources reach this cluster
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # secret
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    region: str
    partition: str
    vpc_id: pulumi.Input[str]  # the VPC it runs in (the load balancer controller's)
    iam: Iam  # how the roles of this stack are named, tagged and bounded (the controller's too)

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:cluster:EksCluster", name, None, opts)
        self._name, self._args = name, args
        partition = aws.get_partition()
        self.partition = partition.partition
        self.region = aws.get_region().region
        self.vpc_id = args.network.vpc_id
        self.iam = args.iam
        if not args.grants:
            pulumi.log.warn(
                "cluster.access is empty: the identity that creates the cluster is its only admin, through an "
                "entry EKS makes outside this stack; list the admins, the deploy role and CI's preview role in "
                "cluster.access (docs/reference/security.md)",
                resource=self,
            )
        # What already exists of this cluster, read live (the same for whoever runs the program).
        self._live = args.cluster_name in (aws.eks.get_clusters().names or [])

        self.cluster = self._control_plane()
        self.kubeconfig = pulumi.Output.secret(self.cluster.kubeconfig_json)
        self.oidc_provider_arn = self.cluster.oidc_provider_arn
        self.oidc_issuer = self.cluster.oidc_issuer
        # Known at preview, and waits for the cluster wherever it is used.
        self.cluster_name = self.cluster.urn.apply(lambda _: args.cluster_name)
        writers = self._access()
        self.node_groups = self._nodes(partition.dns_suffix)
        self.node_group = self.node_groups[0]
        # Configured only once the deployer can authenticate: its entry is in place (entries are eventually
        # consistent, EKS User Guide creating-access-entries) and the nodes came up meanwhile. Configured
        # any earlier, the provider marks the cluster unreachable and every Helm release fails
        # (pulumi-kubernetes provider.go Configure, helm_release.go Create).
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*writers, *self.node_groups]),
        )
        self.ebs_csi_addon, self.default_storage_class = self._ebs_storage()
        self._preview_rbac()

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidcProviderArn": self.oidc_provider_arn,
            }
        )

    def _control_plane(self) -> eks.Cluster:
        """The EKS control plane: the private and public endpoint, Secrets encrypted with a key of its own,
        control-plane logs into a group of the stack's, the OIDC provider for IRSA."""
        name, args = self._name, self._args
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {args.cluster_name}",
            enable_key_rotation=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),  # losing it loses every Secret
        )
        group_name = CONTROL_PLANE_LOG_GROUP.format(args.cluster_name)
        found = aws.cloudwatch.get_log_groups(log_group_name_prefix=group_name).log_group_names
        # Before the cluster, so that EKS writes into it rather than creating one without retention; an
        # existing one (EKS made it for a cluster deployed before, or a destroyed stack left it) is adopted.
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=group_name,
            retention_in_days=args.log_retention_days,
            tags=args.iam.tags,
            opts=pulumi.ResourceOptions(parent=self, import_=adopted(found, group_name)),
        )
        return eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            vpc_id=args.network.vpc_id,
            public_subnet_ids=args.network.public_subnet_ids,
            private_subnet_ids=args.network.private_subnet_ids,
            skip_default_node_group=True,
            authentication_mode=eks.AuthenticationMode.API,
            endpoint_public_access=True,
            endpoint_private_access=True,  # nodes reach the API server inside the VPC
            public_access_cidrs=args.public_access_cidrs,
            # Fixed so that Consul DNS can take a known ClusterIP inside it.
            kubernetes_service_ip_address_range=args.service_cidr,
            encryption_config_key_arn=key.arn,
            enabled_cluster_log_types=args.log_types,
            create_oidc_provider=True,  # IRSA
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),  # components/dns.py owns CoreDNS
            # Pinned: left unset, pulumi-eks would take the newest build on every `up`.
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(version=args.kube_proxy_addon_version),
            vpc_cni_options=eks.VpcCniOptionsArgs(addon_version=args.vpc_cni_addon_version),
            deletion_protection=args.protect,
            # The cluster, its service role, security group, OIDC provider and add-ons (pulumi-eks tags them all).
            tags=args.iam.tags,
            # No storage_classes: EKS (1.30 and later) no longer marks its gp2 class default, so the
            # encrypted gp3 class below is the only default.
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                depends_on=[logs],
                transforms=[args.iam.transform, *([no_creator_entry] if args.grants else [])],
            ),
        )

    def _access(self) -> list[aws.eks.AccessPolicyAssociation]:
        """One access entry per grant, with its access policy; returns the associations of those who deploy.

        An entry is keyed by its principal only, so that a level change swaps the policy and keeps the
        entry. Entries made before by pulumi-eks (`cluster-eks-admin-<key>` under the eks:index:Cluster
        component) keep their state through aliases.
        """
        name, args = self._name, self._args
        writers: list[aws.eks.AccessPolicyAssociation] = []
        for grant in args.grants:
            old = f"{name}-eks-admin-{grant.key}"  # what pulumi-eks called an adminRoleArns entry
            found = self._entry_exists(grant.principal_arn)
            entry = aws.eks.AccessEntry(
                f"{name}-access-{grant.key}",
                cluster_name=self.cluster_name,
                principal_arn=grant.principal_arn,
                kubernetes_groups=list(grant.groups) or None,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    aliases=[pulumi.Alias(name=old, parent=self.cluster)],
                    import_=f"{args.cluster_name}:{grant.principal_arn}" if found else None,
                ),
            )
            if grant.policy is None:
                continue
            scope = aws.eks.AccessPolicyAssociationAccessScopeArgs(
                type="namespace" if grant.namespaces else "cluster",
                namespaces=list(grant.namespaces) or None,
            )
            was_admin = grant.policy == "AmazonEKSClusterAdminPolicy" and not grant.namespaces
            association = aws.eks.AccessPolicyAssociation(
                f"{name}-access-{grant.key}-{grant.policy}",
                cluster_name=self.cluster_name,
                principal_arn=grant.principal_arn,
                policy_arn=policy_arn(self.partition, grant.policy),
                access_scope=scope,
                opts=pulumi.ResourceOptions(
                    parent=entry,
                    aliases=[
                        pulumi.Alias(
                            name=f"{old}-cluster-admin",
                            parent=pulumi.create_urn(old, "aws:eks/accessEntry:AccessEntry", parent=self.cluster),
                        )
                    ]
                    if was_admin
                    else None,
                ),
            )
            if grant.writes:
                writers.append(association)
        return writers

    def _entry_exists(self, principal_arn: str) -> bool:
        """Whether the live cluster has an entry for `principal_arn` (read only when the cluster exists)."""
        if not self._live:
            return False
        try:
            aws.eks.get_access_entry(cluster_name=self._args.cluster_name, principal_arn=principal_arn)
        except Exception as e:  # the data source fails on a missing entry: that is the answer
            if "couldn't find resource" in str(e) or "ResourceNotFoundException" in str(e):
                return False
            raise
        return True

    def _preview_rbac(self) -> None:
        """The preview level: read the program's own kinds, nothing else (components/access.py)."""
        name = self._name
        opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-preview",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PREVIEW_ROLE),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[group], resources=list(resources), verbs=list(READ_VERBS))
                for group, resources in PREVIEW_RULES
            ],
            opts=opts,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-preview",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PREVIEW_ROLE),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group=RBAC, kind="ClusterRole", name=PREVIEW_ROLE),
            subjects=[k8s.rbac.v1.SubjectArgs(api_group=RBAC, kind="Group", name=PREVIEW_GROUP)],
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[role]),
        )

    def _nodes(self, dns_suffix: str) -> list[eks.ManagedNodeGroup]:
        """The managed node groups in the private subnets: their role, and a launch template with IMDSv2."""
        name, args = self._name, self._args
        node_role = aws.iam.Role(
            f"{name}-node",
            assume_role_policy=_service_trust_policy(f"ec2.{dns_suffix}"),
            **args.iam.role("node"),
            opts=args.iam.opts(self),
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=node_role.name,
                policy_arn=f"arn:{self.partition}:iam::aws:policy/{policy}",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for policy in NODE_POLICIES
        ]
        # Hop limit 1: the IMDSv2 token response does not survive the extra hop into a pod's network
        # namespace, so pods cannot take the node role's credentials.
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",  # the root device of the EKS Amazon Linux 2023 AMIs
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=args.node_volume_size,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            update_default_version=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        template = aws.eks.NodeGroupLaunchTemplateArgs(
            id=launch_template.id, version=launch_template.latest_version.apply(str)
        )

        def group(
            suffix: str, capacity: str, types: list[str], sizes: tuple[int, int, int], subnets: list[pulumi.Output[str]]
        ) -> eks.ManagedNodeGroup:
            low, desired, high = sizes
            return eks.ManagedNodeGroup(
                f"{name}-{suffix}",
                cluster=self.cluster,
                # With a launch template pulumi-eks leaves the version to us (nodes/nodegroup.ts
                # createManagedNodeGroup): without it the nodes would stay on the version they were
                # created with, and EKS refuses the next control-plane update until they catch up.
                version=args.kubernetes_version,
                node_role_arn=node_role.arn,
                subnet_ids=subnets,
                instance_types=types,
                capacity_type=capacity,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=low, desired_size=desired, max_size=high),
                launch_template=template,
                tags=args.iam.tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=node_policies),
            )

        groups = [
            group(
                "nodes",
                args.capacity_type,
                args.instance_types,
                (args.min_size, args.desired_size, args.max_size),
                args.network.private_subnet_ids,
            )
        ]
        if args.server_nodes:
            # One on-demand node per Consul server; the servers select it (consul_values ON_DEMAND_NODES).
            # A single server's replacement node must come up in the zone of its EBS volume: one subnet.
            n = args.server_nodes
            subnets = args.network.private_subnet_ids[:1] if n == 1 else args.network.private_subnet_ids
            groups.append(group("servers", "ON_DEMAND", list(SERVER_INSTANCE_TYPES), (n, n, n), subnets))
        return groups

    def _ebs_storage(self) -> tuple[aws.eks.Addon, k8s.storage.v1.StorageClass]:
        """The EBS CSI driver (add-on, with its IRSA role) and the default gp3 StorageClass."""
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        ebs_namespace, ebs_account = EBS_CSI_SERVICE_ACCOUNT
        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi",
            assume_role_policy=irsa_trust_policy(self.oidc_provider_arn, self.oidc_issuer, ebs_namespace, ebs_account),
            **args.iam.role("ebs-csi"),
            opts=args.iam.opts(self),
        )
        ebs_policy = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi",
            role=ebs_role.name,
            policy_arn=f"arn:{self.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            opts=child,
        )
        # An add-on turns ACTIVE only once its pods run, so it waits for the nodes.
        addon = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=self.cluster_name,
            addon_name="aws-ebs-csi-driver",
            addon_version=args.ebs_csi_addon_version,
            service_account_role_arn=ebs_role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.node_groups, ebs_policy]),
        )
        # Consul's servers keep their data on volumes of this class; encrypted with the account's
        # EBS key, bound in the zone where the pod lands, growable in place.
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-{DEFAULT_STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEFAULT_STORAGE_CLASS,
                annotations={IS_DEFAULT_CLASS: "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[addon]),
        )
        return addon, storage_class


def no_creator_entry(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """No EKS creator entry on a cluster whose access is all in config (pulumi-eks sets it true; its
    ignoreChanges on the field leaves an existing cluster's as it was created)."""
    if args.type_ != "aws:eks/cluster:Cluster":
        return None
    old: Any = args.props.get("accessConfig")
    access: dict[str, Any] = {
        **(old if isinstance(old, dict) else {}),
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    return pulumi.ResourceTransformResult(props={**args.props, "accessConfig": access}, opts=args.opts)

"""EKS for platform eks: the control plane, a managed node group, EBS volumes, and the Kubernetes provider.

- Access: authentication mode API (access entries, no aws-auth ConfigMap). pulumi-eks creates the
  cluster with bootstrapClusterCreatorAdminPermissions, so EKS itself gives the identity that runs
  the first `pulumi up` (an assumed role maps to its role) a cluster-admin access entry; each role in
  cluster.adminRoleArns gets one here. A second entry for the deployer would fail with
  ResourceInUseException, so the deployer's own role is skipped if it is listed.
- Workload identity: IRSA, through the cluster's IAM OIDC provider. Every AWS-facing workload (the
  EBS CSI driver here, the load balancer controller) gets its own role whose trust names one service
  account. Chosen over EKS Pod Identity because it needs no agent add-on to pin and keep in step
  with the cluster, and both charts take it as a plain service account annotation.
- Nodes: private subnets, IMDSv2 required with a hop limit of 1 so that pods cannot reach the
  node's instance credentials, encrypted root volumes. On-Demand or Spot capacity: a Spot group lists
  several instance types of one size, and EKS launches a replacement for a Spot node at risk of
  interruption before it drains that node (capacity rebalancing).
- CoreDNS: pulumi-eks's own add-on is off; components/dns.py owns the `coredns` add-on and its Corefile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from .annotations import IS_DEFAULT_CLASS
from .network import Network

EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
DEFAULT_STORAGE_CLASS = "gp3"
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly", "AmazonEKS_CNI_Policy")
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
    kubernetes_version: str
    network: Network  # the VPC and its subnets: the control plane in both, the nodes in the private ones
    instance_types: list[str]  # with SPOT, several of one size: more capacity pools, same pods per node
    capacity_type: Literal["ON_DEMAND", "SPOT"]
    min_size: int
    desired_size: int
    max_size: int
    admin_role_arns: list[str]
    public_access_cidrs: list[str]
    log_types: list[str]
    service_cidr: str
    ebs_csi_addon_version: str
    kube_proxy_addon_version: str
    vpc_cni_addon_version: str
    protect: bool  # guards the cluster and its secrets key against deletion and replacement
    node_volume_size: int = 30


class EksCluster(pulumi.ComponentResource):
    cluster: eks.Cluster
    node_group: eks.ManagedNodeGroup
    ebs_csi_addon: aws.eks.Addon
    default_storage_class: k8s.storage.v1.StorageClass
    provider: k8s.Provider  # the only way Kubernetes resources reach this cluster
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # secret
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    admin_principal: str  # the IAM principal that EKS makes cluster admin at creation
    region: str
    partition: str
    vpc_id: pulumi.Input[str]  # the VPC it runs in (the load balancer controller's)

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:cluster:EksCluster", name, None, opts)
        self._name, self._args = name, args
        partition = aws.get_partition()
        self.partition = partition.partition
        self.region = aws.get_region().region
        caller = aws.get_caller_identity()
        # An assumed-role session ARN (sts ... assumed-role/<role>/<session>) maps to its role.
        self.admin_principal = aws.iam.get_session_context(arn=caller.arn).issuer_arn or caller.arn
        self.vpc_id = args.network.vpc_id

        self.cluster = self._control_plane()
        self.kubeconfig = pulumi.Output.secret(self.cluster.kubeconfig_json)
        self.oidc_provider_arn = self.cluster.oidc_provider_arn
        self.oidc_issuer = self.cluster.oidc_issuer
        # Known at preview, and waits for the cluster wherever it is used.
        self.cluster_name = self.cluster.urn.apply(lambda _: args.cluster_name)
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig, opts=pulumi.ResourceOptions(parent=self)
        )

        self.node_group = self._nodes(partition.dns_suffix)
        self.ebs_csi_addon, self.default_storage_class = self._ebs_storage()

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "oidcProviderArn": self.oidc_provider_arn,
            }
        )

    def _control_plane(self) -> eks.Cluster:
        """The EKS control plane: access entries for the admin roles, the private and public endpoint,
        Secrets encrypted with a key of its own, control-plane logs, the OIDC provider for IRSA."""
        name, args = self._name, self._args
        admin_policy = f"arn:{self.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {args.cluster_name}",
            enable_key_rotation=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),  # losing it loses every Secret
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
            access_entries={
                _role_name(arn): eks.AccessEntryArgs(
                    principal_arn=arn,
                    access_policies={
                        "cluster-admin": eks.AccessPolicyAssociationArgs(
                            policy_arn=admin_policy,
                            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                        )
                    },
                )
                for arn in dict.fromkeys(args.admin_role_arns)
                if arn != self.admin_principal
            },
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
            # No storage_classes: EKS (1.30 and later) no longer marks its gp2 class default, so the
            # encrypted gp3 class below is the only default.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

    def _nodes(self, dns_suffix: str) -> eks.ManagedNodeGroup:
        """The managed node group in the private subnets: its role, and a launch template with IMDSv2."""
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        node_role = aws.iam.Role(
            f"{name}-node", assume_role_policy=_service_trust_policy(f"ec2.{dns_suffix}"), opts=child
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=node_role.name,
                policy_arn=f"arn:{self.partition}:iam::aws:policy/{policy}",
                opts=child,
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
            opts=child,
        )
        return eks.ManagedNodeGroup(
            f"{name}-nodes",
            cluster=self.cluster,
            node_role_arn=node_role.arn,
            subnet_ids=args.network.private_subnet_ids,
            instance_types=args.instance_types,
            capacity_type=args.capacity_type,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, desired_size=args.desired_size, max_size=args.max_size
            ),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=launch_template.id, version=launch_template.latest_version.apply(str)
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=node_policies),
        )

    def _ebs_storage(self) -> tuple[aws.eks.Addon, k8s.storage.v1.StorageClass]:
        """The EBS CSI driver (add-on, with its IRSA role) and the default gp3 StorageClass."""
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        ebs_namespace, ebs_account = EBS_CSI_SERVICE_ACCOUNT
        ebs_role = aws.iam.Role(
            f"{name}-ebs-csi",
            assume_role_policy=irsa_trust_policy(self.oidc_provider_arn, self.oidc_issuer, ebs_namespace, ebs_account),
            opts=child,
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_group, ebs_policy]),
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


def _role_name(arn: str) -> str:
    """The access entry key: account and role name, so that reordering adminRoleArns replaces nothing."""
    account, role = arn.split(":")[4], arn.rsplit("/", 1)[-1]
    return "admin-" + re.sub(r"[^A-Za-z0-9-]", "-", f"{account}-{role}")

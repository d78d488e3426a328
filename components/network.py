"""The VPC for platform eks: public and private subnets in each zone, an internet gateway and NAT.

Plain pulumi_aws rather than awsx.ec2.Vpc: every subnet, route and NAT gateway is a resource of its
own, visible in `pulumi preview` and in the mock tests, and no extra provider plugin is needed.

Load balancers go in the public subnets (internet-facing) or the private ones (internal): the AWS
Load Balancer Controller finds them by the `kubernetes.io/role/*` tags. Nodes go in the private
subnets and reach the internet through NAT.

Flow logs (optional, on by default): every accepted and rejected flow of the VPC goes to a CloudWatch
log group with a retention period, written by a role that only the flow logs service of this account
and region can assume and that may only write to that group (VPC User Guide, "IAM role for
publishing flow logs to CloudWatch Logs"). The group keeps CloudWatch Logs' default encryption at
rest; a customer managed KMS key would add a key, its policy and a monthly charge for metadata
(addresses and ports, no payload) kept a few days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from .iam import Iam

ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"


def cluster_tag(cluster_name: str) -> str:
    """The subnet tag that marks a subnet as usable by this cluster (and no other)."""
    return f"kubernetes.io/cluster/{cluster_name}"


@dataclass
class NetworkArgs:
    cidr: str
    public_subnets: list[str]  # one CIDR per zone
    private_subnets: list[str]
    nat_gateways: Literal["single", "perAz"]
    cluster_name: str  # the EKS cluster that will use the subnets
    protect: bool  # guard the VPC against deletion and replacement
    iam: Iam  # the flow logs role's name, tags and boundary
    flow_log_retention_days: int | None = None  # None: no flow logs


FLOW_LOGS_SERVICE = "vpc-flow-logs.amazonaws.com"
# What the flow logs service needs to write into an existing log group; the VPC User Guide's list
# adds logs:CreateLogGroup and logs:DescribeLogGroups, which only matter when it creates the group.
FLOW_LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")


def flow_log_group_name(cluster_name: str) -> str:
    return f"/aws/vpc-flow-logs/{cluster_name}"


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:network:Network", name, None, opts)
        if len(args.public_subnets) != len(args.private_subnets):
            raise ValueError("give one public and one private subnet per zone")
        self._name, self._args = name, args
        self.availability_zones = _zones(len(args.public_subnets))

        vpc, igw = self._vpc()
        public, private = self._subnets(vpc, igw)
        nats = self._nat(public, igw)
        self._private_routes(vpc, private, nats)
        if args.flow_log_retention_days is not None:
            self._flow_logs(name, vpc, args)

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    def _vpc(self) -> tuple[aws.ec2.Vpc, aws.ec2.InternetGateway]:
        name, args = self._name, self._args
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,  # EKS nodes and the private API endpoint need both
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=pulumi.ResourceOptions(parent=self)
        )
        return vpc, igw

    def _subnets(
        self, vpc: aws.ec2.Vpc, igw: aws.ec2.InternetGateway
    ) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.Subnet]]:
        """A public and a private subnet in each zone, tagged for this cluster's load balancers; the
        public ones route to the internet gateway."""
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        shared = {cluster_tag(args.cluster_name): "shared"}
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags={"Name": f"{name}-public"}, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        for i, zone in enumerate(self.availability_zones):
            # No public IPs on launch: nothing but NAT gateways (Elastic IPs) and load balancers lives here.
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=args.public_subnets[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{zone}", ELB_ROLE_TAG: "1", **shared},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
            )
            public.append(subnet)
            private.append(
                aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=vpc.id,
                    cidr_block=args.private_subnets[i],
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{name}-private-{zone}", INTERNAL_ELB_ROLE_TAG: "1", **shared},
                    opts=child,
                )
            )
        return public, private

    def _nat(self, public: list[aws.ec2.Subnet], igw: aws.ec2.InternetGateway) -> list[aws.ec2.NatGateway]:
        """One NAT gateway in the first zone (demo cost), or one per zone so that losing a zone does
        not cut the others off the internet."""
        name, args = self._name, self._args
        nat_count = len(public) if args.nat_gateways == "perAz" else 1
        child = pulumi.ResourceOptions(parent=self)
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"}, opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public[i].id,
                    tags={"Name": f"{name}-nat-{self.availability_zones[i]}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        return nats

    def _private_routes(self, vpc: aws.ec2.Vpc, private: list[aws.ec2.Subnet], nats: list[aws.ec2.NatGateway]) -> None:
        """A route table per private subnet, so switching natGateways only changes routes."""
        name = self._name
        child = pulumi.ResourceOptions(parent=self)
        for i, subnet in enumerate(private):
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}", vpc_id=vpc.id, tags={"Name": f"{name}-private-{i}"}, opts=child
            )
            aws.ec2.Route(
                f"{name}-private-{i}-default",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[i % len(nats)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child)

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs) -> None:
        """Accepted and rejected traffic of the whole VPC, into a log group only this flow log writes."""
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity().account_id
        region = aws.get_region().region
        partition = aws.get_partition().partition
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=flow_log_group_name(args.cluster_name),
            retention_in_days=args.flow_log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=flow_logs_trust_policy(partition, region, account),
            **args.iam.role("flow-logs"),
            opts=args.iam.opts(self),
        )
        policy = aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(flow_logs_write_policy),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            tags={"Name": f"{name}-flow-logs"},
            # Delivery starts at once; the role must already be allowed to write.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )


def flow_logs_trust_policy(partition: str, region: str, account: str) -> str:
    """Only the flow logs service, acting for a flow log of this account and region (confused deputy)."""
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": FLOW_LOGS_SERVICE},
        "Action": "sts:AssumeRole",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account},
            # The flow log's own ID is not known before it exists, and it needs the role to be created.
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account}:vpc-flow-log/*"},
        },
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def flow_logs_write_policy(log_group_arn: str) -> str:
    """Create and write log streams in one log group: its ARN, and `:*` for its log streams."""
    statement = {
        "Effect": "Allow",
        "Action": list(FLOW_LOG_ACTIONS),
        "Resource": [log_group_arn, f"{log_group_arn}:*"],
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _zones(count: int) -> list[str]:
    """The first `count` regular availability zones of the region (no Local or Wavelength Zones)."""
    zones = aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
    ).names
    if len(zones) < count:
        raise pulumi.RunError(
            f"network.azCount is {count} but the region has {len(zones)} available zones: {', '.join(zones)}"
        )
    return list(zones[:count])

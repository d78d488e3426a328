"""What a stack costs an hour: a small, dated price table, and what the rendered stack runs.

Pure: no Pulumi import. `hourly_cost(run)` reads a run of the program under mocks
(`program.offline.run_program`, what `make plan` evaluates): the node group (count, instance types,
capacity type, root volume), EKS control planes and their log types, NAT gateways, Elastic IPs, the
load balancers the stack makes controllers create (the API gateway's NLB, the Consul UI's and mesh
gateways' when they are on) with the public IPv4 addresses an internet-facing one holds in each public
subnet, the Consul servers' volumes, and the VPC flow logs.

Prices are US dollars in us-west-2 (Linux, list prices) as of PRICES_AS_OF. A type, capacity type or
region without a price gets a line "no price for ..." and no number: nothing is guessed. Per-GB
charges that depend on traffic (NAT processing $0.045/GB, data out to the internet, Logs Insights
scans) are left out; CloudWatch ingestion is a rough estimate, marked `~`.

Sources, and what could not be confirmed on the AWS page itself, are in docs/operations/cost.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from policy.rules import chart_name, load_balancers

if TYPE_CHECKING:
    from program.offline import Resource, Run

PRICES_AS_OF = "2026-11-26"
HOURS_PER_MONTH = 730  # AWS prices GB-months over 730 hours


@dataclass(frozen=True)
class InstanceType:
    vcpu: int
    memory_gib: int
    max_pods: int  # VPC CNI, no prefix delegation: ENIs x (IPv4 addresses per ENI - 1) + 2


INSTANCE_TYPES: Mapping[str, InstanceType] = {
    "t3.small": InstanceType(2, 2, 11),  # the Consul servers' on-demand nodes with Spot (components/cluster.py)
    "t3.medium": InstanceType(2, 4, 17),
    "t3a.medium": InstanceType(2, 4, 17),
    "t3.large": InstanceType(2, 8, 35),
    "t3a.large": InstanceType(2, 8, 35),
    "m5.large": InstanceType(2, 8, 29),
    "m6i.large": InstanceType(2, 8, 29),
}


@dataclass(frozen=True)
class RegionPrices:
    on_demand: Mapping[str, float]  # $ per instance-hour
    spot: Mapping[str, float]  # $ per instance-hour, typical: Spot prices move with supply and demand
    eks_control_plane: float  # $ per cluster-hour, Kubernetes version in standard support
    nat_gateway: float  # $ per NAT gateway-hour
    public_ipv4: float  # $ per public IPv4 address-hour (Elastic IPs, internet-facing load balancers)
    nlb: float  # $ per Network Load Balancer-hour
    nlb_lcu: float  # $ per NLCU-hour
    ebs_gp3: float  # $ per GB-month
    logs_ingestion: float  # $ per GB, CloudWatch Logs (vended logs: first 10 TB a month)
    logs_storage: float  # $ per GB-month, CloudWatch Logs
    s3_storage: float  # $ per GB-month, S3 Standard (first 50 TB)
    s3_put: float  # $ per PUT request


PRICES: Mapping[str, RegionPrices] = {
    "us-west-2": RegionPrices(
        on_demand={
            "t3.small": 0.0208,
            "t3.medium": 0.0416,
            "t3a.medium": 0.0376,
            "t3.large": 0.0832,
            "t3a.large": 0.0752,
            "m5.large": 0.096,
            "m6i.large": 0.096,
        },
        spot={
            "t3.medium": 0.0165,
            "t3a.medium": 0.0155,
            "t3.large": 0.033,
            "t3a.large": 0.031,
            "m5.large": 0.043,
            "m6i.large": 0.045,
        },
        eks_control_plane=0.10,
        nat_gateway=0.045,
        public_ipv4=0.005,
        nlb=0.0225,
        nlb_lcu=0.006,
        ebs_gp3=0.08,
        logs_ingestion=0.50,
        logs_storage=0.03,
        s3_storage=0.023,
        s3_put=0.005 / 1000,
    ),
}

# Usage estimates (not prices): what an idle demo makes, to put a number on usage-billed lines.
NLCU_PER_NLB = 0.1  # one NLCU is 800 new flows/s, 100,000 active flows or 1 GB/h; a demo is far below
FLOW_LOG_GB_PER_NODE_HOUR = 0.001  # ~7,500 records of ~130 bytes an hour per node (docs/operations/flow-logs.md)
CONTROL_PLANE_LOG_GB_PER_HOUR = {"audit": 0.02}  # ~0.5 GB a day from an idle cluster's controllers
OTHER_CONTROL_PLANE_LOG_GB_PER_HOUR = 0.002  # api, authenticator, controllerManager, scheduler, each

SNAPSHOT_GB = 0.001  # one snapshot of a demo's Consul state: well under 1 MB (a team's catalog: more)
CONSUL_SERVER_STORAGE = "10Gi"  # the Consul chart's server.storage default; the project leaves it
NODE_VOLUME_GB = 20  # EKS's own default root volume, when no launch template sets one
PUBLIC_SUBNET_TAG = "kubernetes.io/role/elb"
# The log groups the stack owns (components/network.py, components/cluster.py): EKS writes the control
# plane's to /aws/eks/<cluster>/cluster (EKS User Guide, control-plane-logs).
FLOW_LOG_GROUPS = "/aws/vpc-flow-logs/"
CONTROL_PLANE_LOG_GROUP = "/aws/eks/{}/cluster"  # components/network.py: where internet-facing NLBs go


@dataclass(frozen=True)
class CostLine:
    what: str
    hourly: float | None  # None: no price, see `what`
    estimate: bool = False  # usage-billed: a rough estimate of the usage, not only a price

    def __str__(self) -> str:
        if self.hourly is None:
            return self.what
        return f"{self.what} {'~' if self.estimate else ''}${self.hourly:.4f}"


def hourly_cost(run: Run) -> tuple[float, list[CostLine]]:
    """(total $/h of the lines that have a price, lines). A line without a price says what is missing."""
    if not run.of_type("eks:index:Cluster"):
        return 0.0, []  # platform kubernetes: the cluster is someone else's, the program creates nothing on AWS
    region = run.config.get("aws:region", "")
    prices = PRICES.get(region)
    if prices is None:
        return 0.0, [CostLine(f"no price for region {region or '(aws:region unset)'}", None)]
    lines = [
        *_nodes(run, prices),
        *_control_planes(run, prices),
        *_network(run, prices),
        *_load_balancers(run, prices),
        *_volumes(run, prices),
        *_flow_logs(run, prices),
        *_snapshots(run, prices),
    ]
    return round(sum(line.hourly or 0.0 for line in lines), 6), lines


def summary(run: Run) -> str:
    """One line for `make plan`: the total, the price date and region, and every part."""
    total, lines = hourly_cost(run)
    if not lines:
        return "estimated cost: no AWS resources"
    if all(line.hourly is None for line in lines):
        return f"estimated cost: unknown ({', '.join(map(str, lines))})"
    region = run.config.get("aws:region", "")
    missing = any(line.hourly is None for line in lines)
    amount = f"at least ${total:.2f}/h" if missing else f"${total:.2f}/h"
    return f"estimated cost: {amount} ({region} prices of {PRICES_AS_OF}): " + ", ".join(map(str, lines))


# --- the parts ---------------------------------------------------------------------------------------


def _nodes(run: Run, prices: RegionPrices) -> list[CostLine]:
    lines = []
    for group in run.of_type("eks:index:ManagedNodeGroup"):
        types = list(group.inputs.get("instanceTypes") or [])
        capacity = group.inputs.get("capacityType") or "ON_DEMAND"
        count = _desired(group)
        # On-Demand takes the first type (prioritized); Spot any of them: price the dearest.
        table = prices.spot if capacity == "SPOT" else prices.on_demand
        chosen = types if capacity == "SPOT" else types[:1]
        unpriced = [t for t in chosen if t not in table]
        whose = " for the Consul servers" if group.name.endswith("-servers") else ""  # components/cluster.py
        label = f"{count} x {'/'.join(chosen)} {capacity.lower().replace('_', '-')}{whose}"
        if capacity not in ("ON_DEMAND", "SPOT") or unpriced or not chosen:
            missing = ", ".join(unpriced) or "(no instance type)"
            lines.append(CostLine(f"no price for {missing} {capacity.lower().replace('_', '-')} ({count} nodes)", None))
        else:
            lines.append(CostLine(label, count * max(table[t] for t in chosen)))
        volume = _node_volume_gb(run, group)
        gb_month = count * volume * prices.ebs_gp3
        lines.append(CostLine(f"node volumes {count} x {volume} GB gp3", gb_month / HOURS_PER_MONTH))
    return lines


def _desired(group: Resource) -> int:
    return int((group.inputs.get("scalingConfig") or {}).get("desiredSize") or 0)


def _node_volume_gb(run: Run, group: Resource) -> int:
    template_id = (group.inputs.get("launchTemplate") or {}).get("id")
    for template in run.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        if f"{template.name}-id" == template_id:  # the id the mocks give a resource
            mappings = template.inputs.get("blockDeviceMappings") or []
            return int(sum((m.get("ebs") or {}).get("volumeSize") or 0 for m in mappings))
    return int(group.inputs.get("diskSize") or NODE_VOLUME_GB)


def _control_planes(run: Run, prices: RegionPrices) -> list[CostLine]:
    lines = []
    for cluster in run.of_type("eks:index:Cluster"):
        lines.append(CostLine("control plane", prices.eks_control_plane))
        types = list(cluster.inputs.get("enabledClusterLogTypes") or [])
        if types:
            gb = sum(CONTROL_PLANE_LOG_GB_PER_HOUR.get(t, OTHER_CONTROL_PLANE_LOG_GB_PER_HOUR) for t in types)
            # Kept as long as the stack's group says (components/cluster.py owns /aws/eks/<name>/cluster).
            days = _retention(run, CONTROL_PLANE_LOG_GROUP.format(cluster.inputs.get("name")))
            stored = gb * 24 * days * prices.logs_storage / HOURS_PER_MONTH
            what = f"control-plane logs ({', '.join(types)}) kept {days} days"
            lines.append(CostLine(what, gb * prices.logs_ingestion + stored, estimate=True))
    return lines


def _retention(run: Run, group_name: str) -> int:
    groups = [g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup") if g.inputs.get("name") == group_name]
    return max((int(g.inputs.get("retentionInDays") or 0) for g in groups), default=0)


def _network(run: Run, prices: RegionPrices) -> list[CostLine]:
    nats = len(run.of_type("aws:ec2/natGateway:NatGateway"))
    return [CostLine(f"NAT gateway x {nats}", nats * prices.nat_gateway)] if nats else []


def _load_balancers(run: Run, prices: RegionPrices) -> list[CostLine]:
    found = [lb for r in run.resources if r.custom for lb in load_balancers(r.type, r.inputs)]
    public_subnets = sum(
        1 for s in run.of_type("aws:ec2/subnet:Subnet") if (s.inputs.get("tags") or {}).get(PUBLIC_SUBNET_TAG)
    )
    lines = []
    if found:
        public = sum(1 for _, internet_facing in found if internet_facing)
        each = prices.nlb + NLCU_PER_NLB * prices.nlb_lcu
        lines.append(CostLine(f"NLB x {len(found)} ({public} internet-facing)", len(found) * each, estimate=True))
    addresses = len(run.of_type("aws:ec2/eip:Eip")) + public_subnets * sum(1 for _, pub in found if pub)
    if addresses:
        lines.append(CostLine(f"public IPv4 x {addresses}", addresses * prices.public_ipv4))
    return lines


def _volumes(run: Run, prices: RegionPrices) -> list[CostLine]:
    gb = 0.0
    for release in run.of_type("kubernetes:helm.sh/v3:Release"):
        if chart_name(release.type, release.inputs) == "consul":
            server = (release.inputs.get("values") or {}).get("server") or {}
            gb += int(server.get("replicas", 1)) * _gib(str(server.get("storage", CONSUL_SERVER_STORAGE)))
    return [CostLine(f"Consul volumes {gb:g} GB gp3", gb * prices.ebs_gp3 / HOURS_PER_MONTH)] if gb else []


def _flow_logs(run: Run, prices: RegionPrices) -> list[CostLine]:
    flows = run.of_type("aws:ec2/flowLog:FlowLog")
    if not flows:
        return []
    nodes = sum(_desired(g) for g in run.of_type("eks:index:ManagedNodeGroup"))
    gb_per_hour = max(nodes, 1) * FLOW_LOG_GB_PER_NODE_HOUR
    days = max(
        (
            _retention(run, str(g.inputs.get("name")))
            for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")
            if str(g.inputs.get("name", "")).startswith(FLOW_LOG_GROUPS)
        ),
        default=0,
    )
    stored_gb = gb_per_hour * 24 * days
    hourly = gb_per_hour * prices.logs_ingestion + stored_gb * prices.logs_storage / HOURS_PER_MONTH
    return [CostLine("flow logs", hourly, estimate=True)]


def _snapshots(run: Run, prices: RegionPrices) -> list[CostLine]:
    """Consul's snapshots (components/snapshots.py): a PUT each, kept as long as the bucket's lifecycle says."""
    crons = [c for c in run.of_type("kubernetes:batch/v1:CronJob") if c.name.endswith("snapshots-save")]
    rules = [
        r
        for b in run.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        for r in b.inputs.get("rules") or []
    ]
    if not crons or not rules:
        return []
    per_day = _runs_per_day(str(crons[0].inputs["spec"]["schedule"]))
    days = int((rules[0].get("expiration") or {}).get("days") or 0)
    stored_gb = per_day * days * SNAPSHOT_GB
    hourly = per_day / 24 * prices.s3_put + stored_gb * prices.s3_storage / HOURS_PER_MONTH
    return [CostLine(f"Consul snapshots ({per_day:g} a day, kept {days} days)", hourly, estimate=True)]


def _runs_per_day(schedule: str) -> float:
    """How often a five-field cron schedule fires a day, for the common forms (N, */N, a,b, *)."""
    minute, hour = schedule.split()[:2]

    def count(field: str, span: int) -> float:
        if field == "*":
            return span
        if field.startswith("*/"):
            return span / int(field[2:])
        return len(field.split(","))

    return count(minute, 60) * count(hour, 24)


def _gib(quantity: str) -> float:
    """A Kubernetes storage quantity (10Gi) in GB as EBS bills it; 0 for a form it does not know."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi|Ti|M|G|T)", quantity.strip())
    if not match:
        return 0.0
    units = {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024, "M": 1e-3, "G": 1, "T": 1000}
    return float(match.group(1)) * units[match.group(2)]

"""Who may use the cluster: `cluster.access`, the same whoever runs the program (issue 21 items 1 and 5).

Each principal is one EKS access entry with the policy of its level (components/access.py). Nothing
depends on the identity that runs `pulumi up`: before, the caller's own role was left out of the
entries, so a CI preview (another role) planned an entry a deploy did not have, drift reported it
every day, and a break-glass `make up` by a listed admin deleted that admin's own entry mid-`up`.
"""

from __future__ import annotations

import grpc
import pytest

from components.access import PREVIEW_GROUP, PREVIEW_ROLE, PREVIEW_RULES
from components.cluster import no_creator_entry
from components.iam import Iam
from devtools.snapshot import fingerprint
from migration.phases import PHASE_NAMES
from program import offline
from tests.program.test_aws_platform import ADMINS_ROLE, BOUNDARY, DEPLOYER_ROLE, TEAM_ROLE, WIDE
from tests.program.test_aws_platform import PREVIEW_ROLE as CI_PREVIEW

ENTRY = "aws:eks/accessEntry:AccessEntry"
ASSOCIATION = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
CLUSTER_URN = (
    "urn:pulumi:dev::consul-mesh-migration::consul-mesh-migration:cluster:EksCluster$eks:index:Cluster::cluster-eks"
)


@pytest.fixture(scope="module")
def wide(program):
    run = program(WIDE)
    assert run.error is None, run.error
    return run


def entries(run) -> dict[str, dict]:
    """principal -> {groups, policies: {policy name: scope}}"""
    out = {
        e.inputs["principalArn"]: {"groups": e.inputs.get("kubernetesGroups"), "policies": {}}
        for e in run.of_type(ENTRY)
    }
    for a in run.of_type(ASSOCIATION):
        out[a.inputs["principalArn"]]["policies"][a.inputs["policyArn"].rsplit("/", 1)[-1]] = a.inputs["accessScope"]
    return out


def test_each_principal_is_one_entry_with_the_policy_of_its_level(wide):
    cluster_wide = {"type": "cluster"}
    assert entries(wide) == {
        ADMINS_ROLE: {"groups": None, "policies": {"AmazonEKSClusterAdminPolicy": cluster_wide}},  # adminRoleArns
        DEPLOYER_ROLE: {"groups": None, "policies": {"AmazonEKSClusterAdminPolicy": cluster_wide}},
        # Read-only through the program's own ClusterRole: no EKS policy, so no Secrets and no pods.
        CI_PREVIEW: {"groups": [PREVIEW_GROUP], "policies": {}},
        TEAM_ROLE: {"groups": None, "policies": {"AmazonEKSViewPolicy": {"type": "namespace", "namespaces": ["web"]}}},
    }
    # Every entry is the program's, in the cluster, none left to pulumi-eks or to EKS.
    assert "accessEntries" not in wide.one("eks:index:Cluster").inputs


def test_the_access_is_the_same_whoever_runs_the_program(wide, monkeypatch):
    """A CI preview (its preview role), a deploy (the deploy role) and a break-glass `up` (an admin)
    register the same entries: the deployer's own role is no longer left out."""
    real = offline._fake_call

    def as_deployer(token, args):
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {**real(token, args), "arn": "arn:aws:sts::123456789012:assumed-role/deployer/ci"}
        if token == "aws:iam/getSessionContext:getSessionContext":
            return {**real(token, args), "issuerArn": DEPLOYER_ROLE}
        return real(token, args)

    monkeypatch.setattr(offline, "_fake_call", as_deployer)
    again = offline.run_program(WIDE)
    assert again.error is None, again.error
    assert {r.urn: fingerprint(r.inputs) for r in again.resources} == {
        r.urn: fingerprint(r.inputs) for r in wide.resources
    }
    assert DEPLOYER_ROLE in entries(again)


def test_entries_pulumi_eks_made_before_keep_their_state(wide):
    """Before, an adminRoleArns entry was pulumi-eks's child `<cluster>-<key>` of the eks:index:Cluster
    component, its policy `<cluster>-<key>-<association>` under it (pulumi-eks
    nodejs/eks/cluster/authenticationMode.ts createAccessEntries; key `admin-<account>-<role>`). Without
    the aliases the move would delete the admin's entry and create another: a window without access."""
    entry = next(e for e in wide.of_type(ENTRY) if e.inputs["principalArn"] == ADMINS_ROLE)
    (alias,) = entry.options["aliasSpecs"]
    assert alias == {"name": "cluster-eks-admin-123456789012-platform-admins", "type": "", "parent": CLUSTER_URN}
    association = next(a for a in wide.of_type(ASSOCIATION) if a.inputs["principalArn"] == ADMINS_ROLE)
    old_entry = CLUSTER_URN.replace("$eks:index:Cluster::cluster-eks", f"$eks:index:Cluster${ENTRY}::{alias['name']}")
    assert association.options["aliasSpecs"] == [
        {"name": "cluster-eks-admin-123456789012-platform-admins-cluster-admin", "type": "", "parent": old_entry}
    ]


def test_kubernetes_is_reached_only_once_a_deployer_can_authenticate(wide):
    """Configured earlier, pulumi-kubernetes marks the cluster unreachable and every Helm release fails
    (provider.go Configure -> getResources; helm_release.go Create)."""
    provider = wide.one("pulumi:providers:kubernetes", "cluster-k8s")
    deployers = {a.urn for a in wide.of_type(ASSOCIATION) if a.inputs["policyArn"].endswith("ClusterAdminPolicy")}
    groups = {g.urn for g in wide.of_type("eks:index:ManagedNodeGroup")}
    assert deployers | groups <= set(provider.dependencies)
    assert len(deployers) == 2


def test_a_cluster_whose_access_is_in_config_gets_no_creator_entry(program, wide):
    """pulumi-eks hard-codes bootstrapClusterCreatorAdminPermissions true (cluster/cluster.ts createCore):
    EKS would give whoever runs the first `up` an admin entry outside the stack, and the deploy role's
    own entry would then fail to create (ResourceInUseException)."""
    assert wide.one("eks:index:Cluster").options["transforms"] == 2  # the IAM naming, and this one
    dev = program({})
    assert dev.one("eks:index:Cluster").options["transforms"] == 1  # no access configured: EKS's entry stays

    args = pulumi_args("aws:eks/cluster:Cluster", {"accessConfig": {"authenticationMode": "API"}, "name": "c"})
    result = no_creator_entry(args)
    assert result is not None
    assert result.props["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert no_creator_entry(pulumi_args("aws:iam/role:Role", {})) is None


def test_pulumi_eks_s_own_role_gets_the_stack_s_path_prefix_and_boundary():
    iam = Iam(stack="demo-pr-12", cluster_name="consul-mesh-migration-demo-pr-12", boundary=BOUNDARY)
    result = iam.transform(pulumi_args("aws:iam/role:Role", {"assumeRolePolicy": "{}"}))
    assert result is not None
    assert result.props["path"] == "/consul-mesh-migration/demo-pr-12/"
    assert result.props["namePrefix"] == "eks-cluster-"
    assert result.props["permissionsBoundary"] == BOUNDARY
    assert set(result.opts.ignore_changes or []) == {"path", "namePrefix"}  # the existing role is never renamed
    assert iam.transform(pulumi_args("aws:ec2/securityGroup:SecurityGroup", {})) is None


def pulumi_args(type_: str, props: dict):
    import pulumi

    return pulumi.ResourceTransformArgs(custom=True, type_=type_, name="x", props=props, opts=pulumi.ResourceOptions())


class ProviderError(grpc.RpcError):
    """How the engine hands a data source's failure to the SDK: a gRPC error on the Invoke call, which
    pulumi's invoke() raises in the program (pulumi/runtime/invoke.py do_invoke)."""

    def __init__(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


def test_an_entry_that_already_exists_on_the_cluster_is_adopted(monkeypatch):
    """A cluster created before by a role now listed (EKS's creator entry) has that role's entry outside
    the stack; creating it again fails with ResourceInUseException, so it is imported instead."""
    real = offline._fake_call

    def live(token, args):
        if token == "aws:eks/getClusters:getClusters":
            return {"names": ["consul-mesh-migration-dev"], "id": "us-west-2"}
        if token == "aws:eks/getAccessEntry:getAccessEntry":
            if args["principalArn"] != DEPLOYER_ROLE:
                raise ProviderError(
                    f"reading EKS Access Entry ({args['clusterName']}:{args['principalArn']}): couldn't find resource"
                )
            return {"principalArn": DEPLOYER_ROLE, "clusterName": args["clusterName"], "id": "x"}
        if token == "aws:cloudwatch/getLogGroups:getLogGroups":
            return {"logGroupNames": ["/aws/eks/consul-mesh-migration-dev/cluster"], "arns": [], "id": "x"}
        return real(token, args)

    monkeypatch.setattr(offline, "_fake_call", live)
    run = offline.run_program(WIDE)
    assert run.error is None, run.error
    imported = {e.inputs["principalArn"]: e.options["importId"] for e in run.of_type(ENTRY)}
    assert imported[DEPLOYER_ROLE] == f"consul-mesh-migration-dev:{DEPLOYER_ROLE}"  # pulumi import's ID form
    assert {a for a, i in imported.items() if i} == {DEPLOYER_ROLE}
    logs = run.one("aws:cloudwatch/logGroup:LogGroup", "cluster-logs")
    assert logs.options["importId"] == "/aws/eks/consul-mesh-migration-dev/cluster"


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_preview_reads_every_kind_the_program_manages_and_never_a_secret(program, wide, stack):
    """Drift refreshes every object with the preview level: a kind missing here is Forbidden there."""
    readable = {(group, resource) for group, resources in PREVIEW_RULES for resource in resources}
    runs = [wide] if stack == "dev" else []
    for phase in ("permissive", "hardened"):  # every kind: both versions of a service, then the closed mesh
        i = PHASE_NAMES.index(phase)
        runs.append(program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]}))
    kinds = {
        kind_of(r.type)
        for run in runs
        for r in run.resources
        if r.type.startswith("kubernetes:") and not r.type.startswith("kubernetes:helm.sh/")
    }
    # Secrets are never readable: drift leaves them out of its refresh (the snapshot token's, here).
    assert kinds - readable <= {("", "secrets")}
    assert ("", "secrets") not in readable and ("", "pods") not in readable
    role = runs[-1].of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
    preview = [r for r in role if r.k8s_name == PREVIEW_ROLE]
    if stack == "dev":
        (preview_role,) = preview
        verbs = {v for rule in preview_role.inputs["rules"] for v in rule["verbs"]}
        assert verbs == {"get", "list", "watch"}


def test_preview_reads_what_a_teams_own_workloads_and_the_destinations_outside_the_mesh_add(program):
    """A preview reads each adopted workload, a StatefulSet too (components/adoption.py `_read`), and drift
    refreshes the destinations' Registration and TerminatingGateway: a kind missing here makes the
    preview of such a stack fail Forbidden at its first read."""
    from tests.program.test_adoption import render as adopted
    from tests.program.test_destinations import SERVICES

    runs = [adopted("permissive"), program({"services": SERVICES, "phase": "hardened"}, deployed={"phase": "virtual"})]
    for run in runs:
        assert run.error is None, run.error
    kinds = {kind_of(r.type) for run in runs for r in run.resources if r.type.startswith("kubernetes:")}
    kinds |= {kind_of(t) for run in runs for t, _ in run.reads if t.startswith("kubernetes:")}
    readable = {(group, resource) for group, resources in PREVIEW_RULES for resource in resources}
    assert {("apps", "statefulsets"), ("consul.hashicorp.com", "registrations")} <= kinds
    assert kinds - readable <= {("", "secrets"), ("helm.sh", "releases")}


def kind_of(type_: str) -> tuple[str, str]:
    """kubernetes:<group>/<version>:<Kind> -> (API group, resource), the plural as the API server names it
    (a <Kind>Patch is a server-side patch of <Kind>)."""
    group_version, kind = type_.removeprefix("kubernetes:").rsplit(":", 1)
    group = group_version.rsplit("/", 1)[0] if "/" in group_version else ""
    group = "" if group == "core" else group
    singular = kind.removesuffix("Patch").lower()
    if singular.endswith(("ss", "sh")):
        plural = singular + "es"
    elif singular.endswith("s"):  # servicedefaults, proxydefaults
        plural = singular
    elif singular.endswith("y") and singular[-2] not in "aeiou":
        plural = singular[:-1] + "ies"
    else:
        plural = singular + "s"
    return group, plural

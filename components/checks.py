"""The checks every `up` runs on the cluster: a precheck before the step's config entries change, and a
postcheck once every object of the step is in place. Both run meshcheck/mesh_check.py (this project's
own script, mounted from a ConfigMap) in a Job in the namespace `mesh-checks`, outside the mesh; what
each looks for comes from the migration model (migration/checks.py) and the step (the deployed phases
too), as a document meshcheck/expectation.py builds.

- precheck: reads the sidecars' access logs and statistics of the services the step makes refuse
  plain text, and refuses the step when a caller that would be cut off still calls one of them in
  plain text, or, when the step closes the Mesh, when a meshed pod calls a destination outside it. It
  runs in every `up` (whether a step tightens is known only on the cluster), and says so in one line
  when there is nothing to read. Every config entry waits for it.
- postcheck: every ready pod of every version behind each Service, probed in plain text, and
  requests through the API gateway. The stack records the step's phases only once it has passed.

A check that fails exits non-zero with one line; the Job allows no retry (backoffLimit 0), and the
container's termination message is that line, which pulumi-kubernetes' Job await reports in the
`up`'s error (provider/pkg/await/checker/pod/check.go, containerTerminatedError). A failed Job is
replaced on the next `up` (`pulumi.com/replaceUnready`), so a re-run checks again.

Old check Jobs are kept (retain_on_delete): the precheck recognises the postchecks' own plain-text
probes by their pods' addresses, so those pods must outlive the window. `pulumi destroy` removes
them with the namespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from meshcheck import expectation, mesh_check
from meshcheck.expectation import CHECKS_NAMESPACE, SCRIPT, Verify
from migration import checks as model
from migration.adoption import Live
from migration.entries import ACCESS_LOG_FORMAT
from migration.fleet import Fleet
from migration.phases import describe
from migration.step import Step

from .annotations import AFTER, CHECK_LABEL, CHECK_SCRIPT, INJECT, REPLACE_UNREADY
from .pod_security import NOBODY, restricted_container, restricted_pod
from .target import Gate

SCRIPT_KEY = "mesh_check.py"
MOUNT = "/checks"
POD_START_S = 30  # image pull and scheduling, on top of the check's own timeout
CONSUL_NAMESPACE = "consul"  # where the Mesh entry lives (components/config_entries.py)
TYPE = "consul-mesh-migration:checks:MeshChecks"  # state identity, not a module path
NAME = "checks"  # the component's name in program/compose.py


def postcheck_urn(stack: str, project: str) -> str:
    """The postcheck Job's URN: what `make advance` looks for among the resources an `up` failed on."""
    return f"urn:pulumi:{stack}::{project}::{TYPE}$kubernetes:batch/v1:Job::{NAME}-postcheck"


def _service(s: model.ServiceCheck) -> mesh_check.Service:
    return mesh_check.Service(
        s.name,
        s.namespace,
        s.port,
        s.selector,
        tuple(
            mesh_check.Version(
                v.name,
                v.labels,
                "running" if v.running else "retiring",
                ("accepted" if v.accepts_plain_text else "refused") if v.running else None,
                v.display_name or None,  # a team's own service answers with no fake-service name
            )
            for v in s.versions
        ),
        s.protocol,
    )


def _workload(p: model.CallerPods) -> mesh_check.Workload:
    return mesh_check.Workload(p.name, p.namespace, p.selector)


def postcheck_document(
    fleet: Fleet, step: Step, verify: Verify, lives: Mapping[str, Live] | None = None
) -> dict[str, Any]:
    """What the step must show once its objects are in place: the versions of the target, and those it
    retires, which Pulumi deletes only after this check (migration/checks.py); for a team's own
    services, what their callers' sidecars count for them (`lives`: what each adopted service runs)."""
    lives = lives or {}
    services = [_service(s) for s in model.postcheck_services(fleet, step, lives)]
    upstreams = [
        mesh_check.Upstream(
            u.name, u.protocol, tuple(_workload(c) for c in u.callers), tuple(_workload(c) for c in u.moved)
        )
        for u in model.upstream_checks(fleet, step, lives)
    ]
    exposed = fleet.exposed if not fleet.service(fleet.exposed).adopted or fleet.exposed in lives else None
    post = expectation.postcheck(
        services,
        verify,
        exposed=exposed,
        reached=model.reached(fleet),
        destinations=model.destinations(fleet),
        upstreams=upstreams,
        answers="any" if fleet.service(fleet.exposed).adopted else "fake-service",
    )
    return expectation.document(describe(step.target), postcheck=post)


def precheck_document(
    fleet: Fleet,
    step: Step,
    verify: Verify,
    consul_namespace: str = CONSUL_NAMESPACE,
    lives: Mapping[str, Live] | None = None,
) -> dict[str, Any]:
    """The precheck of the step: the same on a re-run of it, so a re-run changes nothing
    (migration/checks.py precheck_target)."""
    plan = model.precheck_target(fleet, step, lives)
    services = [
        mesh_check.Tightened(
            t.name,
            t.namespace,
            t.port,
            t.selector,
            t.count_mesh_callers,
            tuple(_workload(c) for c in t.mesh_callers),
            t.http,
        )
        for t in plan.services
    ]
    pre = expectation.precheck(
        f"-> {describe(step.target)}",
        services,
        verify,
        access_log_format=ACCESS_LOG_FORMAT,
        outbound=[_workload(s) for s in plan.outbound],
        mesh=mesh_check.MeshObject(consul_namespace, "mesh"),
    )
    return expectation.document(describe(step.target), precheck=pre)


@dataclass
class MeshChecksArgs:
    fleet: Fleet
    gate: Gate  # the phase guard's verdict, with the deployed phases (nothing runs before it), and what comes first
    verify: Verify
    image: str  # the check's image: stock Python, pinned (program/versions.py)
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # the services' namespaces: the checks read pods there
    consul_namespace: str = CONSUL_NAMESPACE  # where the Mesh entry lives (consul.mode existing: the release's)
    # What each adopted service runs (components/adoption.py): their Service's selector and port.
    lives: pulumi.Output[dict[str, Live]] | None = None


class MeshChecks(pulumi.ComponentResource):
    """The checks' namespace, script, identities and the precheck; `postcheck()` adds the postcheck.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    precheck: k8s.batch.v1.Job

    def __init__(self, name: str, args: MeshChecksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        gate = self._gate = args.gate
        opts = gate.component(opts)
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__(TYPE, name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self, depends_on=gate.on())
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata={"name": CHECKS_NAMESPACE, "labels": {CHECK_LABEL: "checks"}}, opts=child
        )
        script = SCRIPT.read_text()
        self._script_hash = hashlib.sha256(script.encode()).hexdigest()[:16]
        self._script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata={"name": "mesh-check", "namespace": CHECKS_NAMESPACE},
            data={SCRIPT_KEY: script},
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(self.namespace)),
        )
        self._accounts = {
            kind: k8s.core.v1.ServiceAccount(
                f"{name}-{kind}-account",
                metadata={"name": kind, "namespace": CHECKS_NAMESPACE},
                automount_service_account_token=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(self.namespace)),
            )
            for kind in ("precheck", "postcheck")
        }
        grants = self._precheck_rbac(name, args)
        self._postcheck_grants = self._postcheck_rbac(name, args)
        document = self._with_lives(
            lambda st, lv: precheck_document(args.fleet, st, args.verify, args.consul_namespace, lv)
        )
        self.precheck = self._job("precheck", document, [self._script, *grants])
        self.register_outputs({})

    def _precheck_rbac(self, name: str, args: MeshChecksArgs) -> list[pulumi.CustomResource]:
        """Read the sidecar logs of the services' pods, and list pods to name a caller by its address.

        Listing pods cluster-wide is what tells a caller in the mesh (which will switch to mTLS) and
        the checks' own probes from a client that would be cut off; nothing else is granted.
        """
        subject = [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="precheck", namespace=CHECKS_NAMESPACE)]
        grants: list[pulumi.CustomResource] = []
        # One ClusterRole holds the rules; a RoleBinding in each service namespace grants them there only.
        reader = k8s.rbac.v1.ClusterRole(
            f"{name}-precheck-logs",
            metadata={"name": "consul-mesh-migration-precheck-logs"},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["list"]),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods/log"], verbs=["get"]),
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on()),
        )
        for ns in sorted({s.namespace for s in args.fleet.services}):
            grants.append(
                k8s.rbac.v1.RoleBinding(
                    f"{name}-precheck-{ns}",
                    metadata={"name": "mesh-precheck", "namespace": ns},
                    role_ref=k8s.rbac.v1.RoleRefArgs(
                        api_group="rbac.authorization.k8s.io",
                        kind="ClusterRole",
                        name="consul-mesh-migration-precheck-logs",
                    ),
                    subjects=subject,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(reader, args.namespaces[ns])),
                )
            )
        mesh = k8s.rbac.v1.Role(
            f"{name}-precheck-mesh",
            metadata={"name": "mesh-precheck", "namespace": args.consul_namespace},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["consul.hashicorp.com"], resources=["meshes"], resource_names=["mesh"], verbs=["get"]
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on()),
        )
        grants.append(
            k8s.rbac.v1.RoleBinding(
                f"{name}-precheck-mesh",
                metadata={"name": "mesh-precheck", "namespace": args.consul_namespace},
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="mesh-precheck"
                ),
                subjects=subject,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(mesh)),
            )
        )
        lookup = k8s.rbac.v1.ClusterRole(
            f"{name}-precheck-pods",
            metadata={"name": "consul-mesh-migration-precheck"},
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["list"])],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on()),
        )
        grants.append(
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-precheck-pods",
                metadata={"name": "consul-mesh-migration-precheck"},
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="consul-mesh-migration-precheck"
                ),
                subjects=subject,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(lookup)),
            )
        )
        return grants

    def _postcheck_rbac(self, name: str, args: MeshChecksArgs) -> list[pulumi.CustomResource]:
        """List the pods and EndpointSlices of the services' namespaces: which pods are behind each
        Service, which version each is, and their addresses to probe. Nothing else, nowhere else."""
        subject = [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="postcheck", namespace=CHECKS_NAMESPACE)]
        role = "consul-mesh-migration-postcheck"
        reader = k8s.rbac.v1.ClusterRole(
            f"{name}-postcheck-reader",
            metadata={"name": role},
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["list"]),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["discovery.k8s.io"], resources=["endpointslices"], verbs=["list"]
                ),
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on()),
        )
        return [
            k8s.rbac.v1.RoleBinding(
                f"{name}-postcheck-ns-{ns}",
                metadata={"name": "mesh-postcheck", "namespace": ns},
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
                subjects=subject,
                opts=pulumi.ResourceOptions(parent=self, depends_on=self._gate.on(reader, args.namespaces[ns])),
            )
            for ns in sorted({s.namespace for s in args.fleet.services})
        ]

    def postcheck(self, done: Sequence[pulumi.CustomResource]) -> k8s.batch.v1.Job:
        """The postcheck, once `done` (every Deployment and config entry of the step, and the gateway
        it sends its requests through) is in place."""
        doc = self._with_lives(lambda st, lv: postcheck_document(self._args.fleet, st, self._args.verify, lv))
        return self._job("postcheck", doc, [self._script, self.precheck, *self._postcheck_grants, *done])

    def _with_lives(self, build: Callable[[Step, Mapping[str, Live]], dict[str, Any]]) -> pulumi.Output[dict[str, Any]]:
        """A document from the step and, when the fleet adopts workloads, what they run: selectors and
        ports only, so not kept as a secret (the live pod templates are)."""
        if self._args.lives is None:
            return self._gate.step.apply(lambda st: build(st, {}))
        both = pulumi.Output.all(self._gate.step, self._args.lives).apply(lambda v: build(v[0], v[1]))
        return pulumi.Output.unsecret(both)

    def _job(
        self, kind: str, doc: pulumi.Output[dict[str, Any]], needs: Sequence[pulumi.CustomResource]
    ) -> k8s.batch.v1.Job:
        verify = self._args.verify
        budget = verify.pre.total if kind == "precheck" else verify.post.total
        labels = {CHECK_LABEL: kind}
        container = k8s.core.v1.ContainerArgs(
            name=kind,
            image=self._args.image,
            command=["python3", "-B", f"{MOUNT}/{SCRIPT_KEY}", kind],
            env=[
                k8s.core.v1.EnvVarArgs(
                    name="MESH_CHECK_EXPECTATION", value=doc.apply(lambda d: json.dumps(d, sort_keys=True))
                )
            ],
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="script", mount_path=MOUNT, read_only=True)],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "50m", "memory": "32Mi"}, limits={"cpu": "500m", "memory": "128Mi"}
            ),
            # The script's one-line verdict; Pulumi's Job await shows it in the `up`'s error.
            termination_message_policy="FallbackToLogsOnError",
            security_context=restricted_container(),
        )
        return k8s.batch.v1.Job(
            f"{self._name}-{kind}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=CHECKS_NAMESPACE,
                labels=labels,
                annotations={
                    REPLACE_UNREADY: "true",
                    # What the check waits for, as an input rather than depends_on: the SDK walks the
                    # graph for every depends_on edge, which a fleet of hundreds of services turns
                    # into seconds; an input orders the Job just the same.
                    AFTER: pulumi.Output.all(*[n.id for n in needs]).apply(lambda ids: f"{len(ids)} objects"),
                },
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=0,  # a failed check is a verdict, not a flake: the script retries while Envoy settles
                active_deadline_seconds=int(budget) + POD_START_S,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=labels,
                        # Outside the mesh: the postcheck proves what a client without a sidecar sees.
                        annotations={INJECT: "false", CHECK_SCRIPT: self._script_hash},
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=kind,
                        automount_service_account_token=True,  # both read the API, each with its own grants
                        restart_policy="Never",
                        security_context=restricted_pod(NOBODY),
                        containers=[container],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="script",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name="mesh-check", default_mode=0o444),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=self._gate.on(self._accounts[kind]),
                retain_on_delete=True,
            ),
        )

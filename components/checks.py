"""The checks every `up` runs on the cluster: a precheck before the step's config entries change, and a
postcheck once every object of the step is in place. Both run meshcheck/mesh_check.py (this project's
own script, mounted from a ConfigMap) in a Job in the namespace `mesh-checks`, outside the mesh.

- precheck: reads the sidecars' access logs of the services the step tightens (migration/checks.py)
  and refuses the step when a caller outside the mesh called one of them in plain text within the
  window, or, when the step closes the Mesh, when a meshed pod called a destination outside it. It
  runs in every `up` (whether a step tightens is known only once the deployed phases are read), and
  says so in one line when there is nothing to read. Every config entry waits for it.
- postcheck: requests through the API gateway and plain-text probes from outside the mesh
  (meshcheck/expectation.py). The stack records the step's phases only once it has passed.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from meshcheck import expectation, mesh_check
from meshcheck.expectation import CHECKS_NAMESPACE, SCRIPT, ServiceSpec, Settings
from migration import checks as model
from migration.fleet import Fleet
from migration.phases import Phase, describe

from .annotations import AFTER, CHECK_LABEL, CHECK_SCRIPT, INJECT, REPLACE_UNREADY
from .target import Gate

SCRIPT_KEY = "mesh_check.py"
MOUNT = "/checks"
RUN_AS = 65534  # nobody: the stock image runs as root unless told otherwise
POD_START_S = 30  # image pull and scheduling, on top of the check's own timeout
CONSUL_NAMESPACE = "consul"  # where the Mesh entry lives (components/config_entries.py)


def specs(fleet: Fleet, target: Mapping[str, Phase]) -> list[ServiceSpec]:
    return [
        ServiceSpec(r.name, r.namespace, r.port, r.versions, r.upstreams, r.accepts_plain_text)
        for r in model.running(fleet, target)
    ]


def postcheck_document(fleet: Fleet, target: Mapping[str, Phase], settings: Settings) -> dict[str, Any]:
    doc = expectation.expectation(
        specs(fleet, target), exposed=fleet.exposed, phase=describe(target), settings=settings
    )
    return {k: v for k, v in doc.items() if k != "precheck"}


def precheck_document(fleet: Fleet, target: Mapping[str, Phase], settings: Settings) -> dict[str, Any]:
    """The precheck of the step to `target`, from the target alone (migration/checks.py): the script
    probes each service the target makes strict and reads the logs only of those that still accept
    plain text, and reads the Mesh before it checks for calls outside it. So the Job is the same on a
    re-run, and a re-run changes nothing."""
    plan = model.precheck_target(fleet, target)
    services = specs(fleet, target)
    step = f"-> {describe(target)}"
    doc = {
        "version": mesh_check.SCHEMA_VERSION,
        "phase": describe(target),
        "precheck": expectation.precheck(
            services,
            plan.services,
            step,
            settings,
            mesh_callers_count=plan.count_mesh_callers,
            outbound=plan.outbound,
            probe=True,
            mesh=(CONSUL_NAMESPACE, "mesh") if plan.outbound else None,
        ),
    }
    mesh_check.parse_expectation(doc)
    return doc


@dataclass
class MeshChecksArgs:
    fleet: Fleet
    target: Mapping[str, Phase]
    gate: Gate  # the phase guard's verdict (nothing runs before it passed), the platform and Consul
    settings: Settings
    image: str  # the check's image: stock Python, pinned (program/versions.py)
    namespaces: Mapping[str, k8s.core.v1.Namespace]  # the services' namespaces: the precheck reads logs there


class MeshChecks(pulumi.ComponentResource):
    """The checks' namespace, script, identities and the precheck; `postcheck()` adds the postcheck.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    precheck: k8s.batch.v1.Job

    def __init__(self, name: str, args: MeshChecksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        gate = self._gate = args.gate
        opts = gate.component(opts)
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:checks:MeshChecks", name, None, opts)
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
        document = pulumi.Output.from_input(precheck_document(args.fleet, args.target, args.settings))
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
            metadata={"name": "mesh-precheck", "namespace": CONSUL_NAMESPACE},
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
                metadata={"name": "mesh-precheck", "namespace": CONSUL_NAMESPACE},
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

    def postcheck(self, done: Sequence[pulumi.CustomResource]) -> k8s.batch.v1.Job:
        """The postcheck, once `done` (every Deployment and config entry of the step, and the gateway
        it sends its requests through) is in place."""
        doc = postcheck_document(self._args.fleet, self._args.target, self._args.settings)
        return self._job("postcheck", pulumi.Output.from_input(doc), [self._script, self.precheck, *done])

    def _job(
        self, kind: str, doc: pulumi.Output[dict[str, Any]], needs: Sequence[pulumi.CustomResource]
    ) -> k8s.batch.v1.Job:
        settings = self._args.settings
        budget = settings.precheck_seconds if kind == "precheck" else settings.postcheck_seconds
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
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
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
                        automount_service_account_token=kind == "precheck",
                        restart_policy="Never",
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=RUN_AS,
                            run_as_group=RUN_AS,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
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

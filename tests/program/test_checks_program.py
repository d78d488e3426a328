"""The checks of every `up` as the program builds them (components/checks.py), in every phase on both
platforms: the Jobs, what they may do, and the order they hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshcheck.expectation import SCRIPT
from migration.phases import PHASE_NAMES
from program.versions import CHECK_IMAGE

JOB = "kubernetes:batch/v1:Job"
CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1"
CHECK_LABEL = "consul-mesh-migration/check"


def step(program, stack: str, phase: str):
    i = PHASE_NAMES.index(phase)
    run = program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]} if i else None)
    assert run.error is None, run.error
    return run


def job(run, kind: str):
    (found,) = [j for j in run.of_type(JOB) if j.inputs["metadata"]["labels"] == {CHECK_LABEL: kind}]
    return found


def document(j) -> dict:
    (container,) = j.inputs["spec"]["template"]["spec"]["containers"]
    (env,) = container["env"]
    assert env["name"] == "MESH_CHECK_EXPECTATION"
    return json.loads(env["value"])


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_each_up_runs_a_precheck_before_the_entries_and_a_postcheck_after_everything(program, stack, phase):
    run = step(program, stack, phase)
    pre, post = job(run, "precheck"), job(run, "postcheck")
    entries = [r for r in run.resources if r.type.startswith(CONSUL) and r.kind != "RouteTimeoutFilter"]
    migration_entries = [e for e in entries if e.name.startswith("mesh-config-")]
    assert migration_entries
    for entry in migration_entries:  # nothing tightens before the precheck has read the callers
        assert run.depends_on(entry, pre), entry.name
    for res in [*run.of_type("kubernetes:apps/v1:Deployment"), *entries, pre]:
        assert run.depends_on(post, res), res.name
    assert run.depends_on(
        post, run.one("kubernetes:consul.hashicorp.com/v1alpha1:ServiceIntentions", "gateway-intentions")
    )
    seal = next(k for k in run.outputs if k.startswith("seal-"))
    for key in ("phase", "phases", seal):
        assert post.urn in run.output_dependencies[key], key


@pytest.mark.parametrize("kind", ["precheck", "postcheck"])
def test_a_check_job_runs_the_projects_script_once_outside_the_mesh_unprivileged(program, kind):
    run = step(program, "local", "strict")
    j = job(run, kind)
    spec = j.inputs["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert j.k8s_namespace == "mesh-checks"
    assert spec["backoffLimit"] == 0  # a failed check is a verdict
    assert spec["template"]["metadata"]["annotations"]["consul.hashicorp.com/connect-inject"] == "false"
    assert container["image"] == CHECK_IMAGE and "@sha256:" in CHECK_IMAGE
    assert container["command"] == ["python3", "-B", "/checks/mesh_check.py", kind]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"  # Pulumi's error shows the line
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is (kind == "precheck")
    assert j.inputs["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"  # a re-run checks again
    assert j.options["retainOnDelete"] is True  # old probes' pods stay recognisable to the precheck
    script = run.one("kubernetes:core/v1:ConfigMap", "checks-script")
    assert script.inputs["data"]["mesh_check.py"] == Path(SCRIPT).read_text()


@pytest.mark.parametrize(
    ("phase", "refusing", "cut_off_mesh_callers", "outbound"),
    [
        ("discovery", ["web"], ["web"], []),
        ("permissive", ["web"], ["web"], []),
        # web-v1 dials api.service.consul: dialedDirectly keeps its sidecar on mTLS, so it is not cut off.
        ("strict", ["api", "web"], ["web"], []),
        ("virtual", ["api", "web"], ["api", "web"], []),
        ("hardened", ["api", "web"], ["api", "web"], ["api", "web"]),
    ],
)
def test_the_precheck_reads_the_services_the_target_makes_strict(
    program, phase, refusing, cut_off_mesh_callers, outbound
):
    pre = document(job(step(program, "local", phase), "precheck"))["precheck"]
    assert [s["service"] for s in pre["services"]] == refusing
    assert [s["service"] for s in pre["services"] if s.get("count_mesh_callers")] == cut_off_mesh_callers
    assert all(
        s["probe_url"] == f"http://{s['service']}.{s['service']}.svc.cluster.local:9091/" for s in pre["services"]
    )
    assert [s["service"] for s in pre.get("outbound", [])] == outbound
    assert ("mesh" in pre) is bool(outbound)


def test_the_postcheck_expects_the_models_names_and_verdicts(program):
    post = document(job(step(program, "local", "permissive"), "postcheck"))["postcheck"]
    assert post["gateway"]["names"] == {"api": ["api (mesh)", "api (non-mesh)"], "web": ["web (mesh)"]}
    assert post["gateway"]["requests"] == 20
    assert [(p["service"], p["expect"]) for p in post["plaintext"]] == [("api", "accepted"), ("web", "refused")]


def test_verify_settings_reach_the_checks(program):
    run = program(
        {"phase": "strict", "verify": {"requests": 50, "tolerance": 0.2, "precheckWindow": 600}}, stack="local"
    )
    assert document(job(run, "postcheck"))["postcheck"]["gateway"]["requests"] == 50
    assert document(job(run, "postcheck"))["postcheck"]["gateway"]["tolerance"] == 0.2
    assert document(job(run, "precheck"))["precheck"]["window_seconds"] == 600


def test_only_the_precheck_may_read_the_cluster_and_only_what_it_needs(program):
    run = step(program, "local", "strict")
    roles = {
        (r.k8s_name, r.k8s_namespace): r.inputs["rules"] for r in run.resources if r.kind in ("Role", "ClusterRole")
    }
    assert roles == {
        ("consul-mesh-migration-precheck-logs", None): [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ],
        ("mesh-precheck", "consul"): [
            {
                "apiGroups": ["consul.hashicorp.com"],
                "resources": ["meshes"],
                "resourceNames": ["mesh"],
                "verbs": ["get"],
            }
        ],
        ("consul-mesh-migration-precheck", None): [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    }
    bindings = {(r.kind, r.k8s_namespace, r.inputs["roleRef"]["name"]) for r in run.resources if "Binding" in r.kind}
    assert bindings == {
        # The logs' rules bind per service namespace only: nothing in any other namespace.
        ("RoleBinding", "api", "consul-mesh-migration-precheck-logs"),
        ("RoleBinding", "web", "consul-mesh-migration-precheck-logs"),
        ("RoleBinding", "consul", "mesh-precheck"),
        ("ClusterRoleBinding", None, "consul-mesh-migration-precheck"),
    }
    subjects = {
        s["name"]
        for r in run.resources
        if r.kind in ("RoleBinding", "ClusterRoleBinding")
        for s in r.inputs["subjects"]
    }
    assert subjects == {"precheck"}

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
    assert pod["automountServiceAccountToken"] is True  # each reads the API with its own grants
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
        # Along the rollout, api keeps dialedDirectly while it stays strict (web-v1 ran during the last up).
        ("virtual", ["api", "web"], ["web"], []),
        ("hardened", ["api", "web"], ["api", "web"], ["api", "web"]),
    ],
)
def test_the_precheck_reads_the_services_the_target_makes_strict(
    program, phase, refusing, cut_off_mesh_callers, outbound
):
    pre = document(job(step(program, "local", phase), "precheck"))["precheck"]
    assert [s["service"] for s in pre["services"]] == refusing
    assert [s["service"] for s in pre["services"] if s["count_mesh_callers"]] == cut_off_mesh_callers
    assert [w["service"] for w in pre["outbound"]] == outbound
    assert ("mesh" in pre) is bool(outbound)


def test_the_postcheck_expects_the_versions_that_run_and_allows_those_the_step_retires(program):
    post = document(job(step(program, "local", "strict"), "postcheck"))["postcheck"]
    (api,) = [s for s in post["services"] if s["service"] == "api"]
    assert api["versions"] == [
        {
            "version": "api-v2",
            "labels": {"app": "api", "version": "v2"},
            "role": "running",
            "plaintext": "refused",
            "answers_as": "api (mesh)",
        },
        {
            "version": "api-v1",
            "labels": {"app": "api", "version": "v1"},
            "role": "retiring",
            "answers_as": "api (non-mesh)",
        },
    ]
    assert post["gateway"]["requests"] == 20 and post["gateway"]["reached"] == ["web", "api"]


def test_the_sidecars_log_in_the_format_the_precheck_reads(program):
    """consul-k8s refuses a jsonFormat that is not JSON (api/v1alpha1/proxydefaults_types.go validateAccessLogs)."""
    from migration.entries import ACCESS_LOG_FORMAT

    run = step(program, "local", "strict")
    defaults = run.one(f"{CONSUL}:ProxyDefaults")
    logs = defaults.inputs["spec"]["accessLogs"]
    assert logs["enabled"] is True and json.loads(logs["jsonFormat"]) == ACCESS_LOG_FORMAT
    assert document(job(run, "precheck"))["precheck"]["signal"]["format"] == ACCESS_LOG_FORMAT


def test_make_advance_knows_the_postcheck_job_by_its_urn(program):
    from components.checks import postcheck_urn

    run = step(program, "dev", "strict")
    assert job(run, "postcheck").urn == postcheck_urn("dev", "consul-mesh-migration")


def test_verify_settings_reach_the_checks(program):
    run = program(
        {"phase": "strict", "verify": {"requests": 50, "tolerance": 0.2, "precheckWindow": 600}}, stack="local"
    )
    assert document(job(run, "postcheck"))["postcheck"]["gateway"]["requests"] == 50
    assert document(job(run, "postcheck"))["postcheck"]["gateway"]["tolerance"] == 0.2
    assert document(job(run, "precheck"))["precheck"]["window_seconds"] == 600


def test_each_check_may_read_only_what_it_needs(program):
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
        ("consul-mesh-migration-postcheck", None): [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
        ],
    }
    bindings = {
        (r.kind, r.k8s_namespace, r.inputs["roleRef"]["name"], r.inputs["subjects"][0]["name"])
        for r in run.resources
        if "Binding" in r.kind
    }
    assert bindings == {
        # The namespaced rules bind per service namespace only: nothing in any other namespace.
        ("RoleBinding", "api", "consul-mesh-migration-precheck-logs", "precheck"),
        ("RoleBinding", "web", "consul-mesh-migration-precheck-logs", "precheck"),
        ("RoleBinding", "consul", "mesh-precheck", "precheck"),
        ("ClusterRoleBinding", None, "consul-mesh-migration-precheck", "precheck"),
        ("RoleBinding", "api", "consul-mesh-migration-postcheck", "postcheck"),
        ("RoleBinding", "web", "consul-mesh-migration-postcheck", "postcheck"),
    }

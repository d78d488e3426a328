"""The checks' documents from the model (migration/checks.py -> components/checks.py ->
meshcheck/expectation.py): what each step's postcheck requires and allows, what its precheck reads, and
that the precheck is the same on a re-run of a step. meshcheck/ itself imports nothing of ours."""

from __future__ import annotations

import ast
import itertools

import pytest

from components.checks import postcheck_document, precheck_document
from meshcheck import mesh_check
from meshcheck.expectation import SCRIPT, Verify, document, postcheck
from migration.fleet import Fleet, Service
from migration.phases import PHASE_NAMES, Phase, versions
from migration.plan import plan
from migration.step import Step, dialed_directly
from migration.workloads import exposed_names, upstream_names

D, P, S, V, H = Phase
FLEET = Fleet((Service("api", "api", migrates=True), Service("web", "web", upstreams=("api",))), exposed="web")
FIVE = Fleet(
    (
        Service("payments", "billing", migrates=True),
        Service("orders", "orders", migrates=True, upstreams=("payments",)),
        Service("catalog", "catalog", migrates=True),
        Service("search", "search", upstreams=("catalog",)),
        Service("web", "web", upstreams=("orders", "catalog")),
    ),
    exposed="web",
)
VERIFY = Verify(20, 0.4, 900, mesh_check.PostTimeouts(), mesh_check.PreTimeouts())


def every(phase: Phase, fleet: Fleet = FLEET) -> dict[str, Phase]:
    return dict.fromkeys(fleet.names, phase)


def versions_of(doc: dict, service: str) -> list[dict]:
    (svc,) = [s for s in doc["postcheck"]["services"] if s["service"] == service]
    return svc["versions"]


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_names_through_the_gateway_are_the_models(phase):
    target = every(Phase(phase))
    doc = postcheck_document(FLEET, Step(target), VERIFY)
    running = {s: sorted({v["answers_as"] for v in versions_of(doc, s) if v["role"] == "running"}) for s in FLEET.names}
    assert running == {"api": upstream_names(FLEET, target), "web": exposed_names(FLEET, target)}
    assert doc["postcheck"]["gateway"]["reached"] == ["web", "api"]


@pytest.mark.parametrize(
    ("phase", "api"),
    [
        ("discovery", {"api-v1": "accepted"}),
        ("permissive", {"api-v1": "accepted", "api-v2": "accepted"}),
        ("strict", {"api-v2": "refused"}),
        ("virtual", {"api-v2": "refused"}),
        ("hardened", {"api-v2": "refused"}),
    ],
)
def test_every_pod_of_a_running_version_probes_as_its_phase_says(phase, api):
    doc = postcheck_document(FLEET, Step(every(Phase(phase))), VERIFY)
    assert {v["version"]: v["plaintext"] for v in versions_of(doc, "api")} == api
    assert {v["plaintext"] for v in versions_of(doc, "web")} == {"refused"}  # in the mesh from the start


@pytest.mark.parametrize(("before", "after"), [(b, a) for b in Phase for a in Phase if abs(a.index - b.index) == 1])
def test_a_step_allows_the_versions_it_retires_and_requires_those_it_runs(before, after):
    """Pulumi deletes what a step retires after the postcheck (deployment_executor.go performPostSteps)."""
    doc = postcheck_document(FLEET, Step(every(after), every(before)), VERIFY)
    for s in FLEET.services:
        roles = {v["version"]: v["role"] for v in versions_of(doc, s.name)}
        now = {f"{s.name}-{v}" for v in versions(after, s.migrates)}
        gone = {f"{s.name}-{v}" for v in versions(before, s.migrates)} - now
        assert roles == {**dict.fromkeys(now, "running"), **dict.fromkeys(gone, "retiring")}
        assert all("plaintext" not in v for v in versions_of(doc, s.name) if v["role"] == "retiring")


def test_a_rerun_allows_nothing_that_is_gone_already():
    doc = postcheck_document(FLEET, Step(every(S), every(S)), VERIFY)
    assert [v["version"] for v in versions_of(doc, "api")] == ["api-v2"]


def counted(doc: dict) -> dict[str, bool]:
    return {s["service"]: s["count_mesh_callers"] for s in doc["precheck"]["services"]}


def test_a_mesh_caller_counts_exactly_where_dialed_directly_leaves_it_no_path():
    """issue 17: api goes strict in the wave its last service-DNS caller moves to virtual. web-v1 runs
    until the end of that `up`, so dialedDirectly is on for api (migration/step.py) and web-v1's plain
    text, which turns mTLS through it, is not a caller the step cuts off."""
    step = Step({"api": S, "web": V}, {"api": P, "web": S})
    assert dialed_directly(FLEET, step, "api")
    assert counted(precheck_document(FLEET, step, VERIFY)) == {"api": False, "web": True}
    # With web on virtual addresses before and after, no caller keeps dialedDirectly on: a caller with a
    # sidecar that still sends plain text to api's pods is cut off like any other.
    alone = Step({"api": S, "web": V}, {"api": P, "web": V})
    assert not dialed_directly(FLEET, alone, "api")
    assert counted(precheck_document(FLEET, alone, VERIFY)) == {"api": True, "web": True}


def rollouts() -> list[tuple[Fleet, list[dict[str, Phase]]]]:
    default = [every(p) for p in Phase]
    five = [every(D, FIVE), *plan(FIVE, every(D, FIVE)).waves]
    return [(FLEET, default), (FLEET, [every(D), *plan(FLEET, every(D)).waves]), (FIVE, five)]


@pytest.mark.parametrize(("fleet", "waves"), rollouts())
def test_the_precheck_of_a_step_is_the_same_on_its_rerun(fleet, waves):
    """A re-run of an `up` must not replace its precheck Job: dialed_directly stays while a service
    keeps its phase, and the first run recorded it (program/outputs.py `dialedDirectly`)."""
    recorded: frozenset[str] | None = None
    for before, after in itertools.pairwise(waves):
        first = Step(after, before, recorded)
        recorded = frozenset(n for n in fleet.names if dialed_directly(fleet, first, n))
        rerun = Step(after, after, recorded)
        assert precheck_document(fleet, first, VERIFY) == precheck_document(fleet, rerun, VERIFY), (before, after)


def test_closing_the_mesh_reads_every_sidecar_for_calls_outside_it():
    pre = precheck_document(FLEET, Step(every(H), every(V)), VERIFY)["precheck"]
    assert [w["service"] for w in pre["outbound"]] == ["api", "web"]
    assert pre["mesh"] == {"namespace": "consul", "name": "mesh"}
    assert "mesh" not in precheck_document(FLEET, Step(every(V), every(S)), VERIFY)["precheck"]


def test_the_precheck_reads_the_format_the_program_configures():
    from migration.entries import ACCESS_LOG_FORMAT

    pre = precheck_document(FLEET, Step(every(S), every(P)), VERIFY)["precheck"]
    assert pre["signal"]["format"] == ACCESS_LOG_FORMAT
    assert pre["signal"]["ignore_namespaces"] == ["mesh-checks"]


def test_services_the_script_cannot_check_are_refused_when_built():
    api = mesh_check.Service("api", "api", 9091, {"app": "api"})
    with pytest.raises(ValueError, match="a service is given twice"):
        postcheck([api, api], VERIFY, exposed="api", reached=["api"])
    with pytest.raises(ValueError, match=r"expected 'web' among them"):
        postcheck([api], VERIFY, exposed="web", reached=["api"])


def test_a_bad_setting_fails_when_built_not_in_the_job():
    bad = Verify(20, 1.5, 900, mesh_check.PostTimeouts(), mesh_check.PreTimeouts())
    services = [mesh_check.Service("web", "web", 9091, {"app": "web"})]
    with pytest.raises(mesh_check.Invalid, match=r"gateway\.tolerance: expected a number in \[0, 1\], got 1\.5"):
        document("strict", postcheck=postcheck(services, bad, exposed="web", reached=["web"]))


def test_the_default_budget_leaves_room_for_two_job_pods_in_60_seconds():
    post, pre = mesh_check.PostTimeouts(), mesh_check.PreTimeouts()
    # Worst case: both scripts run to their whole budget; 15 s remain for scheduling and starting two pods.
    assert post.total + pre.total <= 45
    assert post.settle + post.request <= post.total


def test_the_check_job_program_imports_nothing_of_ours():
    for path in (SCRIPT, SCRIPT.with_name("expectation.py"), SCRIPT.with_name("__init__.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in {"pulumi", "program", "components", "migration"}

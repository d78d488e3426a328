"""meshcheck/expectation.py: the check's expectation from plain data, and that it agrees with the model.

`specs` maps the model's view of a step (migration/checks.py) to ServiceSpec, as the Job wiring does;
meshcheck/ itself imports nothing from migration/, program/ or components/.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from meshcheck import mesh_check
from meshcheck.expectation import IMAGE, SCRIPT, ServiceSpec, Settings, expectation, expected_names, tightened, to_json
from migration.checks import running
from migration.fleet import Fleet, Service
from migration.phases import PHASE_NAMES, Phase
from migration.workloads import exposed_names, upstream_names

FLEET = Fleet((Service("api", "api", migrates=True), Service("web", "web", upstreams=("api",))), exposed="web")


def specs(phase: str, fleet: Fleet = FLEET) -> list[ServiceSpec]:
    """The services as they run after `up` in `phase`, from the model."""
    target = dict.fromkeys(fleet.names, Phase(phase))
    return [
        ServiceSpec(r.name, r.namespace, r.port, r.versions, r.upstreams, r.accepts_plain_text)
        for r in running(fleet, target)
    ]


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_names_through_the_gateway_are_the_models(phase: str) -> None:
    target = dict.fromkeys(FLEET.names, Phase(phase))
    assert expected_names(specs(phase), "web") == {
        "api": upstream_names(FLEET, target),
        "web": exposed_names(FLEET, target),
    }


@pytest.mark.parametrize(
    ("phase", "api"),
    [
        ("discovery", "accepted"),
        ("permissive", "accepted"),
        ("strict", "refused"),
        ("virtual", "refused"),
        ("hardened", "refused"),
    ],
)
def test_plaintext_verdicts_per_phase(phase: str, api: str) -> None:
    probes = expectation(specs(phase), exposed="web", phase=phase)["postcheck"]["plaintext"]
    assert [(p["service"], p["url"], p["expect"]) for p in probes] == [
        ("api", "http://api.api.svc.cluster.local:9091/", api),
        ("web", "http://web.web.svc.cluster.local:9091/", "refused"),
    ]


@pytest.mark.parametrize("index", range(1, len(PHASE_NAMES)))
def test_only_the_step_to_strict_needs_a_precheck(index: int) -> None:
    before, after = PHASE_NAMES[index - 1], PHASE_NAMES[index]
    doc = expectation(specs(after), exposed="web", phase=after, previous=specs(before), previous_phase=before)
    services = [s["service"] for s in doc["precheck"]["services"]]
    assert services == (["api"] if after == "strict" else [])
    if after == "strict":
        assert doc["precheck"]["step"] == "permissive -> strict"
        assert doc["precheck"]["services"] == [{"service": "api", "namespace": "api", "selector": "app=api"}]


def test_the_permissive_document() -> None:
    doc = expectation(specs("permissive"), exposed="web", phase="permissive")
    assert "precheck" not in doc
    assert doc["postcheck"]["gateway"] == {
        "url": "http://api-gateway.consul.svc.cluster.local:80/",
        "requests": 20,
        "tolerance": 0.4,
        "exposed": "web",
        "names": {"api": ["api (mesh)", "api (non-mesh)"], "web": ["web (mesh)"]},
    }
    assert json.loads(to_json(doc)) == doc
    assert mesh_check.parse_expectation(json.loads(to_json(doc))).postcheck is not None


def test_a_deeper_graph_names_every_level() -> None:
    fleet = Fleet(
        (
            Service("api", "api", migrates=True, upstreams=("db",)),
            Service("db", "db", migrates=True),
            Service("web", "web", upstreams=("api",)),
        ),
        exposed="web",
    )
    assert expected_names(specs("strict", fleet), "web") == {
        "api": ["api (mesh)"],
        "db": ["db (mesh)"],
        "web": ["web (mesh)"],
    }


def test_the_mesh_closing_step_can_name_what_it_tightens() -> None:
    doc = expectation(specs("hardened"), exposed="web", phase="hardened", tighten=["api"], previous_phase="virtual")
    assert doc["precheck"]["step"] == "virtual -> hardened"
    assert tightened(specs("virtual"), specs("hardened")) == []


@pytest.mark.parametrize(
    ("services", "message"),
    [
        (
            [ServiceSpec("web", "web", 9091, {"v1": "web (mesh)"}, ("api",))],
            "service 'web' calls 'api', which is not among",
        ),
        ([ServiceSpec("api", "api", 9091, {"v1": "a"})] * 2, "service 'api' is given twice"),
        ([ServiceSpec("api", "api", 9091, {"v1": "a"})], "the exposed service 'web' is not among the services"),
        ([ServiceSpec("web", "web", 9091, {})], "service 'web' is met through the gateway but runs no version"),
    ],
)
def test_graphs_the_script_cannot_check_are_refused_when_built(services: list[ServiceSpec], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        expectation(services, exposed="web", phase="strict")


def test_a_bad_setting_fails_when_built_not_in_the_job() -> None:
    with pytest.raises(mesh_check.Invalid, match=r"gateway\.tolerance"):
        expectation(specs("strict"), exposed="web", phase="strict", settings=Settings(tolerance=1.5))


def test_the_default_budget_leaves_room_for_two_job_pods_in_60_seconds() -> None:
    s = Settings()
    # Worst case: both scripts run to their whole budget; 15 s remain for scheduling and starting two pods.
    assert s.postcheck_seconds + s.precheck_seconds <= 45
    assert s.settle_seconds < s.postcheck_seconds


def test_the_image_is_pinned_by_version_tag_and_digest() -> None:
    assert re.fullmatch(r"python:3\.13\.\d+-alpine3\.\d+@sha256:[0-9a-f]{64}", IMAGE)


def test_checks_import_nothing_of_the_pulumi_program() -> None:
    for path in (SCRIPT, SCRIPT.with_name("expectation.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(
                    n.split(".")[0] in {"pulumi", "program", "components", "pulumi_kubernetes"} for n in names
                )

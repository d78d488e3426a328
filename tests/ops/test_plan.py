"""`make plan`: the reviewer's view of the whole rollout, computed from the program under mocks."""

from __future__ import annotations

import json

import pytest

import ops.plan
from ops.plan import Change, diff_paths, main, plan, render

THIRD = [
    {"name": "api", "migrates": True},
    {"name": "payments", "namespace": "billing", "migrates": True},
    {"name": "web", "upstreams": ["api", "payments"]},
]


def what(changes: list[Change], action: str) -> list[tuple[str, str, str]]:
    return [(c.kind, c.namespace, c.name) for c in changes if c.action == action]


@pytest.fixture(scope="module")
def steps(program):
    return plan("local", evaluate=program)


def test_one_step_per_phase_from_an_empty_stack(steps):
    assert [(s.before, s.after) for s in steps] == [
        (None, "discovery"),
        ("discovery", "permissive"),
        ("permissive", "strict"),
        ("strict", "virtual"),
        ("virtual", "hardened"),
    ]


def test_the_first_step_creates_everything_and_deletes_nothing(steps):
    first = steps[0].changes
    assert {c.action for c in first} == {"create"}
    created = what(first, "create")
    for obj in [
        ("Release", "consul", "consul"),
        ("Mesh", "consul", "mesh"),
        ("ProxyDefaults", "consul", "global"),
        ("ServiceDefaults", "api", "api"),
        ("ServiceIntentions", "api", "api"),
        ("Deployment", "api", "api-v1"),
        ("Deployment", "web", "web-v1"),
    ]:
        assert obj in created


def without_checks(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.kind != "Job"]


def test_each_later_step_runs_both_checks_again(steps):
    """The checks' Jobs carry the step's expectation, so every step replaces (re-runs) them."""
    for step in steps[1:]:
        assert sorted(c.name for c in step.changes if c.kind == "Job") == ["checks-postcheck", "checks-precheck"]


def test_each_later_step_lists_exactly_the_migration_changes(steps):
    permissive, strict, virtual, hardened = (without_checks(s.changes) for s in steps[1:])
    # api's ServiceDefaults is permissive from discovery on, so api-v2 joins without another change.
    assert [(c.action, c.kind, c.name) for c in permissive] == [("create", "Deployment", "api-v2")]

    # api's Service leaves catalog sync: api-v2's pods would be synced as plain instances (migration/workloads.py).
    assert sorted(what(strict, "update")) == [("Service", "api", "api"), ("ServiceDefaults", "api", "api")]
    assert what(strict, "delete") == [("Deployment", "api", "api-v1")]
    assert what(strict, "create") == []

    assert what(virtual, "create") == [("Deployment", "web", "web-v2")]
    assert what(virtual, "delete") == [("Deployment", "web", "web-v1")]
    assert virtual.index(next(c for c in virtual if c.action == "create")) < virtual.index(
        next(c for c in virtual if c.action == "delete")
    )  # the replacement first

    assert sorted(what(hardened, "update")) == [("Mesh", "consul", "mesh"), ("ServiceDefaults", "api", "api")]
    assert what(hardened, "create") == what(hardened, "delete") == []


def test_render_reads_like_a_review(steps):
    text = render("local", steps)
    assert "step 2: discovery -> permissive" in text
    assert "step 1: (empty stack) -> discovery" in text
    assert "  delete  Deployment             api          api-v1\n" in text
    assert "spec.transparentProxy.meshDestinationsOnly: false -> true" in text


def test_diff_paths_names_each_leaf_that_changes():
    old = {"spec": {"protocol": "http", "mutualTLSMode": "strict", "transparentProxy": {"dialedDirectly": True}}}
    new = {"spec": {"protocol": "http"}}
    assert diff_paths(old, new) == [
        'spec.mutualTLSMode: "strict" -> (absent)',
        'spec.transparentProxy: {"dialedDirectly": true} -> (absent)',
    ]
    assert diff_paths(new, new) == []


def test_the_command_follows_the_config_so_a_third_service_shows_in_the_plan(program, monkeypatch, capsys):
    monkeypatch.setattr(ops.plan, "run_program", program)
    assert main(["--stack", "local", "--set", f"services={json.dumps(THIRD)}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Rollout plan for stack local")
    step2 = out.split("step 2:")[1].split("step 3:")[0]
    assert "create  Deployment             billing      payments-v2" in step2
    assert "ServiceDefaults" not in step2  # permissive since discovery
    step3 = out.split("step 3:")[1]
    assert "update  ServiceDefaults        billing      payments" in step3


def test_a_program_error_fails_the_command_with_its_message(program, monkeypatch, capsys):
    monkeypatch.setattr(ops.plan, "run_program", program)
    assert main(["--stack", "local", "--set", 'services=[{"name": "api", "upstreams": ["nope"]}]']) == 1
    err = capsys.readouterr().err
    assert "phase discovery" in err
    assert "'nope' is not another service" in err


def test_a_phase_given_plans_as_if_the_stack_file_said_it(capsys):
    """make plan PHASE=strict was ignored silently; now it is the plan from strict."""
    assert main(["--stack", "local", "--set", "phase=virtual"]) == 0
    out = capsys.readouterr().out
    assert "step 1: (empty stack) -> virtual" in out
    assert "step 2: virtual -> hardened" in out

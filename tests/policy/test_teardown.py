"""The teardown rule (policy/rules.py `teardown_order`): `pulumi destroy` deletes whatever makes a load
balancer before the controller that releases it. Read from a stack's state before `make demo ARGS=destroy`
(`state_nodes`), and held at every preview and up as the stack policy `destroy-releases-load-balancers`
(`policy_nodes`, from CrossGuard's resources)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from policy import rules
from tests.conftest import as_policy
from tests.ops.test_demo import CONSUL, CONTROLLER, gateway, state


def problems(resources: list[dict[str, Any]]) -> list[str]:
    return [v.message for v in rules.teardown_order(rules.state_nodes(resources))]


def test_teardown_is_safe_when_every_load_balancer_goes_before_its_controllers():
    assert problems(state(CONTROLLER, CONSUL, gateway("urn:consul"))) == []
    # through a parent component that waits for Consul
    component = {"urn": "urn:gwc", "type": "consul-mesh-migration:gateway:Gateway", "dependencies": ["urn:consul"]}
    assert problems(state(CONTROLLER, CONSUL, component, gateway(parent="urn:gwc"))) == []


def test_teardown_problems_name_the_load_balancer_that_could_outlive_its_controller():
    found = problems(state(CONTROLLER, CONSUL, gateway()))
    assert len(found) == 2
    assert all("Gateway api-gateway" in p for p in found)
    service = {
        "urn": "urn:ui",
        "type": "kubernetes:core/v1:Service",
        "inputs": {"metadata": {"name": "ui"}, "spec": {"type": "LoadBalancer"}},
        "dependencies": [],
    }
    assert problems(state(CONTROLLER, service)) == [
        "Service ui does not depend on the load balancer controller, which may go first"
    ]


def test_the_gateways_namespace_must_outlive_the_load_balancer_controller_too():
    namespace = {"urn": "urn:ns", "type": "kubernetes:core/v1:Namespace", "inputs": {"metadata": {"name": "consul"}}}
    gw = gateway("urn:consul") | {"inputs": {"metadata": {"name": "api-gateway", "namespace": "consul"}}}
    assert problems(state(CONTROLLER, CONSUL, namespace, gw)) == [
        "Namespace consul (of Gateway api-gateway) does not depend on the load balancer controller, which may go first"
    ]
    namespace["dependencies"] = ["urn:lbc"]
    assert problems(state(CONTROLLER, CONSUL, namespace, gw)) == []


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_the_programs_graph_tears_down_load_balancers_before_their_controllers(program, stack):
    run = program({"phase": "strict"}, stack=stack)
    assert run.error is None, run.error
    resources = [
        {
            "urn": r.urn,
            "type": r.type,
            "inputs": r.inputs,
            "dependencies": r.dependencies,
            "parent": r.parent,
            "provider": r.provider,
        }
        for r in run.resources
    ]
    assert problems(resources) == []
    # The same graph as CrossGuard hands the stack policy, components included.
    assert rules.destroy_releases_load_balancers(as_policy(run)) == []


def _policy_resource(entry: dict[str, Any], by_urn: dict[str, Any]) -> Any:
    """A stand-in for CrossGuard's PolicyResource: its parent and dependencies are resources."""
    return SimpleNamespace(
        urn=entry["urn"],
        resource_type=entry["type"],
        props=entry.get("inputs") or {},
        dependencies=[by_urn[u] for u in entry.get("dependencies") or []],
        property_dependencies={},
        parent=by_urn.get(entry.get("parent") or ""),
        provider=None,
    )


def test_the_stack_policy_reads_crossguards_resource_graph_as_the_state():
    entries = state(CONTROLLER, CONSUL, gateway())
    by_urn: dict[str, Any] = {}
    for entry in entries:  # dependencies first, as the state lists them
        by_urn[entry["urn"]] = _policy_resource(entry, by_urn)
    violations = rules.destroy_releases_load_balancers(list(by_urn.values()))
    assert [v.message for v in violations] == problems(entries)
    assert {v.urn for v in violations} == {"urn:gw"}

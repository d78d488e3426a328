"""Services outside the mesh in the stack config: `services[i].outside`, `sidecar`, and calls to them."""

from __future__ import annotations

from typing import Any

import pytest

from migration.outside import Destination, Outside
from migration.phases import Phase
from program.config import ConfigError, parse_config

# api migrates; a VM service (billing) and a CronJob (nightly-report) call it in plain text.
SERVICES: list[dict[str, Any]] = [
    {"name": "api", "migrates": True},
    {"name": "web", "upstreams": ["api"]},
    {"name": "billing", "outside": "vm", "upstreams": ["api"]},
    {"name": "nightly-report", "outside": "job", "namespace": "reports", "upstreams": ["api"]},
]


def config(services: list[dict[str, Any]], **more: Any) -> Any:
    return parse_config({"services": services, **more})


def test_outside_services_have_no_phase_and_become_callers_of_the_model():
    cfg = config(SERVICES)
    assert cfg.target() == {"api": Phase.DISCOVERY, "web": Phase.DISCOVERY}
    fleet = cfg.fleet()
    assert fleet.names == ["api", "web"]
    assert fleet.outside == (Outside("billing", "vm", ("api",)), Outside("nightly-report", "job", ("api",)))


def test_a_plain_text_caller_outside_the_mesh_is_named_where_its_upstream_would_refuse_plain_text():
    with pytest.raises(ConfigError) as e:
        config(SERVICES, phase="strict")
    lines = str(e.value).splitlines()
    assert lines[0].startswith(
        "config consul-mesh-migration:phase: 'api' cannot refuse plain text (strict) while 'billing' (vm, "
    )
    assert "consul connect envoy -sidecar-for billing" in lines[0]
    assert "'nightly-report' (job, outside the mesh)" in lines[1]


def test_with_their_own_sidecars_the_callers_block_nothing_and_get_intentions():
    from migration.entries import intentions

    services = [{**s, "sidecar": True} if s["name"] in ("billing", "nightly-report") else s for s in SERVICES]
    cfg = config(services, phase="hardened")
    assert [i.source for i in intentions(cfg.fleet())["api"]] == ["web", "billing", "nightly-report"]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (
            {"name": "billing", "outside": "vm", "migrates": True},
            ["services[2]", "migrates is not for a service outside"],
        ),
        ({"name": "billing", "outside": "vm", "phase": "strict"}, ["services[2]", "phase is not for", "no phase"]),
        ({"name": "billing", "outside": "vm", "namespace": "billing"}, ["namespace is for a job"]),
        ({"name": "billing", "sidecar": True}, ["sidecar is for a service outside the mesh"]),
        ({"name": "billing", "outside": "lambda"}, ["services[2].outside", "'vm', 'job' or 'cluster'"]),
    ],
)
def test_keys_an_outside_service_cannot_have_are_refused(entry, words):
    with pytest.raises(ConfigError) as e:
        config([SERVICES[0], SERVICES[1], entry])
    for word in words:
        assert word in str(e.value)


def test_a_call_to_an_outside_service_needs_its_port_and_never_goes_to_a_job():
    ledger = {"name": "ledger", "outside": "vm"}
    with pytest.raises(
        ConfigError, match=r"services\[0\].upstreams: 'api' calls 'ledger', which is outside the mesh: give"
    ):
        config([{**SERVICES[0], "upstreams": ["ledger"]}, SERVICES[1], ledger])
    with pytest.raises(ConfigError, match="'nightly-report' is a job outside the mesh: nothing calls a Job"):
        config([{**SERVICES[0], "upstreams": ["nightly-report"]}, *SERVICES[1:4]])
    fleet = config([{**SERVICES[0], "upstreams": ["ledger"]}, SERVICES[1], {**ledger, "port": 5432}]).fleet()
    assert fleet.service("api").destinations == (Destination("ledger", 5432),)  # its agent registers it


def test_the_plan_says_where_the_migration_stops_and_what_would_unblock_it(program):
    from ops.plan import blocked

    lines = blocked("dev", {"services": SERVICES})
    assert len(lines) == 1
    assert lines[0].startswith("'api' stops at permissive: 'billing' (vm, outside the mesh) calls it in plain text;")
    run = program({"services": SERVICES})
    assert run.error is None
    assert run.outputs["verify"]["next"].startswith("make up STACK=dev PHASE=permissive")
    outside = {r.k8s_name for r in run.resources if r.k8s_name in ("billing", "nightly-report", "ledger")}
    assert outside == set()  # nothing of the program's for a service outside the mesh

"""Users have the dev and local stacks deployed: no refactor may move or change what they already have.

A resource's URN is its identity in Pulumi's state: a new type token, name or parent makes
`pulumi up` delete it and create another (for the VPC or the cluster, a new one). tests/data/urns.json
holds the URNs the default stacks had in every phase, along the rollout (each phase with the one
before it deployed), before the migration model became its own package. Resources may be added;
none of these may disappear or be renamed. A move that cannot be avoided needs an alias and an
entry here, in the same commit.
"""

from __future__ import annotations

import json

import pytest

from devtools.snapshot import differences, fingerprint
from migration.phases import PHASE_NAMES
from tests.conftest import DATA

HELD = json.loads((DATA / "urns.json").read_text())


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_every_resource_a_deployed_stack_has_keeps_its_urn(program, stack, phase):
    i = PHASE_NAMES.index(phase)
    run = program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]} if i else None)
    assert run.error is None, run.error
    missing = sorted(set(HELD[stack][phase]) - {r.urn for r in run.resources})
    assert not missing, f"{len(missing)} URN(s) would be replaced on `pulumi up`:\n" + "\n".join(missing)


RECORDED = json.loads((DATA / "default_output.json").read_text())


@pytest.mark.parametrize("stack", ["dev", "local"])
@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_the_default_stacks_render_exactly_the_recorded_objects(program, stack, phase):
    """The fleet model must render every existing stack as before. A deliberate change re-records
    tests/data/default_output.json (`python -m devtools.snapshot --write`) in the same commit."""
    i = PHASE_NAMES.index(phase)
    run = program({"phase": phase}, stack=stack, deployed={"phase": PHASE_NAMES[i - 1]} if i else None)
    assert run.error is None, run.error
    now = {r.urn: fingerprint(r.inputs) for r in run.resources}
    assert differences(RECORDED[f"{stack}/{phase}"], now) == []

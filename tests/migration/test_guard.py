"""The guard: each service moves at most one phase per `up`, from a step that completed (migration/guard.py)."""

from __future__ import annotations

import pytest

from migration.guard import (
    PhaseJumpError,
    VersionStepError,
    allowed,
    check_moves,
    check_versions,
    read_deployed,
    seal_key,
)
from migration.phases import Phase

D, P, S, V, H = Phase
NAMES = ["api", "web"]


def deployed(**outputs):
    return read_deployed(outputs, NAMES)


def both(phase: Phase) -> dict[str, Phase]:
    return dict.fromkeys(NAMES, phase)


def seal(phases: dict[str, Phase]) -> dict[str, object]:
    return {seal_key(phases): {"phases": {n: p.value for n, p in phases.items()}, "retires": []}}


@pytest.mark.parametrize("requested", list(Phase))
def test_a_fresh_stack_may_start_at_any_phase(requested):
    assert check_moves(deployed(), both(requested)) == []


@pytest.mark.parametrize(
    ("live", "requested"), [(D, D), (D, P), (P, S), (S, V), (V, H), (H, H), (H, V), (S, P), (P, D)]
)
def test_one_step_forward_back_or_none_is_allowed(live, requested):
    assert check_moves(deployed(phases={"api": live.value, "web": live.value}), both(requested)) == []


def test_each_service_moves_at_most_one_phase_compared_with_its_own_deployed_phase():
    live = deployed(phases={"api": "permissive", "web": "virtual"})
    assert check_moves(live, {"api": S, "web": H}) == []
    with pytest.raises(PhaseJumpError) as err:
        check_moves(live, {"api": V, "web": H})
    assert "'api': phase 'virtual' is 2 steps from the deployed phase 'permissive'" in str(err.value)
    assert "one `pulumi up` may select: discovery, permissive, strict" in str(err.value)
    assert err.value.services == ["api"]


def test_a_stack_deployed_before_the_fleet_reports_one_phase_for_every_service():
    live = deployed(phase="strict")
    assert live.phases == both(S)
    assert check_moves(live, {"api": V, "web": S}) == []
    with pytest.raises(PhaseJumpError, match="'api', 'web': phase 'discovery' is 2 steps"):
        check_moves(live, both(D))


def test_a_service_new_to_the_stack_may_start_at_any_phase():
    live = deployed(phases={"api": "strict"})
    assert check_moves(live, {"api": S, "web": H}) == []


def test_the_override_turns_a_jump_into_a_warning():
    (warning,) = check_moves(deployed(phase="discovery"), both(H), allow_jump=True)
    assert "allowPhaseJump" in warning and "'discovery'" in warning and "'hardened'" in warning


def test_an_unknown_deployed_phase_needs_the_override():
    with pytest.raises(PhaseJumpError, match="'migrated'"):
        check_moves(deployed(phase="migrated"), both(D))
    assert check_moves(deployed(phase="migrated"), both(D), allow_jump=True)


def test_allowed_phases_at_the_ends():
    assert allowed(D) == [D, P]
    assert allowed(H) == [V, H]


# --- a step whose deletions failed is not complete ----------------------------------------------


def test_one_seal_means_the_last_up_finished():
    live = deployed(phases={"api": "strict", "web": "strict"}, **seal(both(S)))
    assert live.unfinished_from is None


def test_two_seals_mean_the_last_up_did_not_finish_and_only_a_rerun_or_the_way_back_is_allowed():
    """Pulumi writes the outputs before it deletes the retired versions and keeps an output the
    program stopped exporting unless the whole `up` succeeded (pulumi/pulumi#15754): a failed
    deletion of api-v1 leaves the permissive seal beside the strict one."""
    live = deployed(phases={"api": "strict", "web": "strict"}, **seal(both(P)), **seal(both(S)))
    assert live.unfinished_from == both(P)
    assert check_moves(live, both(S)) == []  # re-run: Pulumi retries the deletion
    assert check_moves(live, both(P)) == []  # or go back to the complete step
    with pytest.raises(PhaseJumpError) as err:
        check_moves(live, both(V))
    message = str(err.value)
    assert "did not finish" in message
    assert "every service at permissive -> every service at strict" in message
    assert "Re-run it with the same phases" in message


def test_the_seal_is_named_after_the_phases_so_a_rerun_writes_the_same_one():
    assert seal_key(both(S)) == seal_key(both(S))
    assert seal_key(both(S)) != seal_key({"api": S, "web": V})
    assert seal_key(both(S)).startswith("seal-")


# --- versions ------------------------------------------------------------------------------------------

DEPLOYED_PINS = {"kubernetes": "1.35", "vpcCniAddon": "v1.21.1-eksbuild.8", "consulChart": "2.0.3"}


@pytest.mark.parametrize(
    "requested",
    [
        {"kubernetes": "1.35", "consulChart": "2.0.4"},  # a patch
        {"kubernetes": "1.36", "consulChart": "2.0.3"},  # one minor
        {"consulChart": "2.1.0"},
        {"consulChart": "3.0.0"},  # the next major, from its predecessor
        {"vpcCniAddon": "v1.22.0-eksbuild.1", "kubernetes": "1.36"},  # the add-on moves with the cluster
        {"vpcCniAddon": "v1.20.4-eksbuild.1"},  # an add-on may go back: EKS only forbids skipping ahead
    ],
)
def test_one_step_per_pin_is_allowed(requested):
    check_versions(DEPLOYED_PINS, requested)


def test_nothing_recorded_holds_nothing():
    check_versions(None, {"kubernetes": "1.40"})
    check_versions({}, {"kubernetes": "1.40"})


def test_a_refusal_names_every_key_that_moved():
    with pytest.raises(VersionStepError) as e:
        check_versions(DEPLOYED_PINS, {"kubernetes": "1.37", "consulChart": "2.1.0"})
    assert e.value.keys == ["versions.consulChart", "versions.kubernetes"]
    assert "skips from the deployed 1.35" in str(e.value) and "separate ups" in str(e.value)

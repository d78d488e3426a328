"""One `pulumi up` moves the migration at most one phase, forward or back."""

import pytest

from stacks.guard import PhaseJumpError, allowed_phases, check_step
from stacks.phases import Phase

D, P, S, V, H = Phase


@pytest.mark.parametrize("requested", list(Phase))
def test_a_fresh_stack_may_start_at_any_phase(requested):
    assert check_step(None, requested) is None


@pytest.mark.parametrize(
    ("deployed", "requested"),
    [(D, D), (D, P), (P, S), (S, V), (V, H), (H, H), (H, V), (S, P), (P, D)],
)
def test_one_step_forward_back_or_none_is_allowed(deployed, requested):
    assert check_step(deployed.value, requested) is None


@pytest.mark.parametrize(("deployed", "requested"), [(D, S), (D, H), (P, V), (H, S), (V, D)])
def test_a_jump_is_refused_naming_the_deployed_phase_and_the_allowed_ones(deployed, requested):
    with pytest.raises(PhaseJumpError) as err:
        check_step(deployed.value, requested)
    message = str(err.value)
    assert repr(deployed.value) in message
    for allowed in allowed_phases(deployed):
        assert allowed.value in message
    assert "allowPhaseJump" in message


def test_the_override_turns_a_jump_into_a_warning():
    warning = check_step("discovery", Phase.HARDENED, allow_jump=True)
    assert warning is not None
    assert "discovery" in warning
    assert "hardened" in warning


def test_an_unknown_deployed_phase_needs_the_override():
    with pytest.raises(PhaseJumpError, match="'migrated'"):
        check_step("migrated", Phase.DISCOVERY)
    assert check_step("migrated", Phase.DISCOVERY, allow_jump=True)


def test_allowed_phases_at_the_ends():
    assert allowed_phases(D) == [D, P]
    assert allowed_phases(H) == [V, H]


def test_a_refused_step_leaves_nothing_behind_for_the_next_evaluation():
    """The plan, the benchmark and these tests evaluate many configs in one process."""
    from tools.mockrun import run_program

    refused = run_program({"phase": "hardened"}, stack="local", deployed={"phase": "discovery"})
    assert refused.error is not None
    allowed = run_program({"phase": "strict"}, stack="local", deployed={"phase": "strict"})
    assert allowed.error is None, allowed.error
    assert allowed.outputs["phase"] == "strict"

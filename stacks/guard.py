"""The phase guard: one `pulumi up` moves the migration at most one phase, forward or back.

Plain Python, no Pulumi imports; stacks/platform.py feeds it the phase that the stack last
deployed (read through a StackReference to the stack itself).
"""

from __future__ import annotations

from .phases import Phase


class PhaseJumpError(Exception):
    """Raised when the requested phase is more than one step from the deployed one."""


def allowed_phases(deployed: Phase) -> list[Phase]:
    """The phases one `pulumi up` may select when `deployed` is live."""
    return [p for p in (deployed.previous, deployed, deployed.next) if p is not None]


def check_step(deployed: Phase | str | None, requested: Phase, allow_jump: bool = False) -> str | None:
    """Return None when the step is allowed, a warning when it is forced, or raise PhaseJumpError.

    `deployed` is None on a fresh stack (no phase exported yet): any phase may start.
    An unknown deployed value (a stack from another program version) is treated like a fresh one
    only with `allow_jump`, since nothing can be said about how far the step is.
    """
    if deployed is None or deployed == "":
        return None
    if isinstance(deployed, str):
        try:
            deployed = Phase(deployed)
        except ValueError:
            if allow_jump:
                return f"deployed phase {deployed!r} is unknown; allowPhaseJump lets {requested.value!r} go ahead"
            raise PhaseJumpError(
                f"the stack reports deployed phase {deployed!r}, which this program does not know; "
                "set consul-mesh-migration:allowPhaseJump true to go ahead anyway"
            ) from None
    allowed = allowed_phases(deployed)
    if requested in allowed:
        return None
    if allow_jump:
        return (
            f"allowPhaseJump: moving from {deployed.value!r} straight to {requested.value!r} "
            f"(normally one of {', '.join(p.value for p in allowed)})"
        )
    raise PhaseJumpError(
        f"phase {requested.value!r} is {abs(requested.index - deployed.index)} steps from the deployed phase "
        f"{deployed.value!r}; one `pulumi up` may select: {', '.join(p.value for p in allowed)}. "
        "Advance one phase at a time, or set consul-mesh-migration:allowPhaseJump true to force it."
    )

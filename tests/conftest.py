"""Shared fixtures: `program` evaluates the real Pulumi program under mocks for any config.

ROOT is the repository (what a test reads beside the code: the README, the Makefile, the workflows)
and DATA the recorded samples and held state under tests/data/.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devtools import stubs
from policy import rules
from program.offline import Run, run_program

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

_cache: dict[str, Run] = {}


def _key(overrides: Mapping[str, Any] | None, stack: str, deployed: Mapping[str, Any] | None) -> str:
    return json.dumps([overrides or {}, stack, deployed or {}], sort_keys=True)


@pytest.fixture(scope="session")
def program() -> Callable[..., Run]:
    """program(overrides, stack="dev", deployed=None) -> Run; the same config is evaluated once.

    `overrides` are stack config keys (project keys without the prefix); `deployed` stands for the
    outputs the stack reports from its last `pulumi up`.
    """

    def evaluate(
        overrides: Mapping[str, Any] | None = None, *, stack: str = "dev", deployed: Mapping[str, Any] | None = None
    ) -> Run:
        key = _key(overrides, stack, deployed)
        if key not in _cache:
            _cache[key] = run_program(overrides, stack=stack, deployed=deployed)
        return _cache[key]

    return evaluate


@pytest.fixture(scope="session")
def loopback() -> Iterator[stubs.Loopback]:
    """The one loopback server of the session (devtools/stubs.py): every stub cluster, gateway and pod of
    the tests listens on its event loop; what failed on it is raised at the end."""
    net = stubs.shared()
    yield net
    net.check()


@pytest.fixture(scope="module", params=["dev", "local"])
def default_run(program: Callable[..., Run], request: pytest.FixtureRequest) -> Run:
    """The dev and the local stack as their stack files say, each once per test module."""
    run = program({}, stack=request.param)
    assert run.error is None, run.error
    return run


def as_policy(run: Run, *, custom_only: bool = False) -> list[rules.Resource]:
    """A run's resources as CrossGuard hands them to the policy pack: with what each waits for."""
    return [
        rules.Resource(
            r.type,
            r.inputs,
            r.urn,
            dependencies=r.dependencies,
            parent=r.parent or None,
            provider=r.provider.rsplit("::", 1)[0] or None,  # a provider reference is "<urn>::<id>"
        )
        for r in run.resources
        if r.custom or not custom_only
    ]

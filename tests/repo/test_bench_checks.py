"""devtools/bench_checks.py runs both check Jobs against the stubs, passes, and prints the figures."""

from __future__ import annotations

import pytest

from devtools import bench_checks


def test_bench_checks_runs_the_jobs_and_keeps_to_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_checks.main(["--repeat", "1", "--fleet", "6"]) == 0
    out = capsys.readouterr().out
    assert "postcheck said: [strict] postcheck ok: plain text on every ready pod as expected (api-v2 1 refused" in out
    assert "precheck said:  [strict] precheck ok: no plain-text caller outside the mesh of api in the last 900 s" in out
    assert "precheck of a fleet of 6 services, 2 of them made strict in one wave: " in out
    assert "(budget 60 s a step: ok)" in out

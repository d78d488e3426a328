"""devtools/bench_checks.py runs the check script against its stubs, passes, and prints the figures."""

from __future__ import annotations

import pytest

from devtools import bench_checks


def test_bench_checks_runs_and_keeps_to_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_checks.main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "postcheck said: [permissive] postcheck ok: 20 requests" in out
    assert "precheck said:  [strict] precheck ok: no plain-text caller outside the mesh of api" in out
    assert "(budget 60 s a step: ok)" in out

"""`make bench` fails when the stack's cost is over its target, so CI and scripts can act on it.

A fake measurement stands in for the fresh interpreters: no timing in the test.
"""

from __future__ import annotations

from pathlib import Path

from devtools import bench


def bench_with(
    seconds: dict[str, float],
    capsys,
    fleet: float = 2.0,
    planner: float = 0.2,
    checks_over: bool = False,
    discover_over: bool = False,
) -> tuple[int, list[str]]:
    def measure(
        stack: str, phase: str, main: Path | None, repeat: int, extra: dict[str, object] | None = None
    ) -> tuple[float, int, list[str]]:
        if main:
            return 1.0, 0, ["pulumi"]
        return (fleet if extra else seconds[phase]), 1500 if extra else 100, ["pulumi"]

    code = bench.main(
        [], measure=measure, planner=lambda: planner, checks=lambda: checks_over, discover=lambda: discover_over
    )
    return code, capsys.readouterr().out.splitlines()


def test_bench_fails_when_a_phase_is_over_its_target(capsys):
    code, lines = bench_with(dict.fromkeys(bench.PHASES, 1.2) | {"strict": 1.6}, capsys)
    assert code == 1
    assert "worst ratio 1.60 (target <= 1.50): OVER TARGET" in lines


def test_bench_passes_within_its_targets(capsys):
    code, lines = bench_with(dict.fromkeys(bench.PHASES, 1.5), capsys)
    assert code == 0
    assert "worst ratio 1.50 (target <= 1.50): ok" in lines
    assert "fleet of 200 services: 2.00 s, 1500 resources, 1.33 x the 2-service default (target <= 3.0): ok" in lines


def test_bench_fails_when_the_fleet_or_the_planner_or_the_checks_are_over_target(capsys):
    assert bench_with(dict.fromkeys(bench.PHASES, 1.0), capsys, fleet=3.5)[0] == 1
    assert bench_with(dict.fromkeys(bench.PHASES, 1.0), capsys, planner=1.5)[0] == 1
    assert bench_with(dict.fromkeys(bench.PHASES, 1.0), capsys, checks_over=True)[0] == 1
    assert bench_with(dict.fromkeys(bench.PHASES, 1.0), capsys, discover_over=True)[0] == 1

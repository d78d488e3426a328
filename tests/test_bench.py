"""`make bench` fails when the stack's cost is over its target, so CI and scripts can act on it.

A fake measurement stands in for the fresh interpreters: no timing in the test.
"""

from __future__ import annotations

from pathlib import Path

from tools import bench


def bench_with(seconds: dict[str, float], capsys) -> tuple[int, str]:
    def measure(stack: str, phase: str, main: Path | None, repeat: int) -> tuple[float, int, list[str]]:
        return (1.0 if main else seconds[phase]), 0 if main else 100, ["pulumi"]

    code = bench.main([], measure=measure)
    return code, capsys.readouterr().out.splitlines()[-1]


def test_bench_fails_when_a_phase_is_over_its_target(capsys):
    code, verdict = bench_with(dict.fromkeys(bench.PHASES, 1.2) | {"strict": 1.6}, capsys)
    assert code == 1
    assert verdict == "worst ratio 1.60 (target <= 1.50): OVER TARGET"


def test_bench_passes_within_its_target(capsys):
    code, verdict = bench_with(dict.fromkeys(bench.PHASES, 1.5), capsys)
    assert code == 0
    assert verdict == "worst ratio 1.50 (target <= 1.50): ok"

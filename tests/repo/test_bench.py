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
    adopted_over: bool = False,
) -> tuple[int, list[str]]:
    def measure(
        stack: str, phase: str, main: Path | None, repeat: int, extra: dict[str, object] | None = None
    ) -> tuple[float, int, list[str]]:
        if main:
            return 1.0, 0, ["pulumi"]
        return (fleet if extra else seconds[phase]), 1500 if extra else 100, ["pulumi"]

    code = bench.main(
        [],
        measure=measure,
        planner=lambda: planner,
        checks=lambda: checks_over,
        discover=lambda: discover_over,
        adopted=lambda: adopted_over,
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
    assert bench_with(dict.fromkeys(bench.PHASES, 1.0), capsys, adopted_over=True)[0] == 1


def test_the_replay_registers_exactly_the_resources_the_program_registered(tmp_path, monkeypatch):
    """The adopted fleet's floor is a replay of its resources through Pulumi's generic classes
    (devtools/bench_adopted.py): the same types, names and parents, and the same reads."""
    import json

    from devtools import bench_adopted
    from program.offline import run_program
    from tests.program.test_adoption import config, team_cluster

    run = run_program(config("permissive"), stack="local", cluster=team_cluster())
    assert run.error is None, run.error
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(bench_adopted.dump(run)))
    replay = tmp_path / "replay.py"
    replay.write_text(bench_adopted.REPLAY)
    monkeypatch.setenv("REPLAY_DUMP", str(dump))
    again = run_program(config("permissive"), stack="local", main=replay, cluster=team_cluster())
    assert again.error is None, again.error

    def shape(r):
        return sorted((x.type, x.name, x.parent.rsplit("::", 1)[-1]) for x in r.resources)

    assert shape(again) == shape(run)
    assert len(again.reads) == len(run.reads)

"""The planner: the fewest `pulumi up`s that take every service to hardened (migration/plan.py)."""

from __future__ import annotations

import pytest

from devtools.fleets import FLEET
from migration.fleet import Fleet, Service, check_graph
from migration.phases import Phase
from migration.plan import plan
from migration.step import Step, check_step
from program.config import parse_config

D, P, S, V, H = Phase

DEMO = Fleet((Service("api", "api", migrates=True), Service("web", "web", upstreams=("api",))), "web")
CHAIN = Fleet(
    (
        Service("payments", "billing", migrates=True),
        Service("orders", "orders", migrates=True, upstreams=("payments",)),
        Service("web", "web", upstreams=("orders",)),
    ),
    "web",
)
# Five services with a chain (the README's example): web -> orders -> payments, web -> catalog,
# and search in the mesh from the start, calling catalog.
FIVE = Fleet(
    (
        Service("payments", "billing", migrates=True),
        Service("orders", "orders", migrates=True, upstreams=("payments",)),
        Service("catalog", "catalog", migrates=True),
        Service("search", "search", upstreams=("catalog",)),
        Service("web", "web", upstreams=("orders", "catalog", "search")),
    ),
    "web",
)


def short(target: dict[str, Phase]) -> str:
    return " ".join(f"{n}={p.value[:4]}" for n, p in target.items())


def assert_valid(fleet: Fleet, start: dict[str, Phase], waves: list[dict[str, Phase]]) -> None:
    """Every wave passes the guard (one phase per service) and the call-graph rules, and ends hardened."""
    before = start
    for wave in waves:
        assert all(abs(wave[n].index - before[n].index) <= 1 for n in wave), short(wave)
        check_step(fleet, Step(wave, before))
        before = wave
    assert set(before.values()) == {H}


@pytest.mark.parametrize(
    ("fleet", "start", "count"),
    [
        (DEMO, {"api": D, "web": D}, 4),
        (DEMO, {"api": H, "web": H}, 0),
        (DEMO, {"api": P, "web": S}, 3),
        # payments may go strict only after orders-v1 is gone: one wave more than the demo.
        (CHAIN, {"payments": D, "orders": D, "web": D}, 5),
        (FIVE, {n: D for n in FIVE.names}, 5),
    ],
)
def test_the_plan_has_the_fewest_waves_the_rules_allow(fleet, start, count):
    result = plan(fleet, start)
    assert len(result.waves) == count
    assert_valid(fleet, start, result.waves)


def test_the_demo_moves_together_and_names_the_strict_flip_window():
    result = plan(DEMO, {"api": D, "web": D})
    assert [set(w.values()) for w in result.waves] == [{P}, {S}, {V}, {H}]
    assert [len(w) for w in result.windows] == [0, 1, 0, 0]  # the race-free order would cost two waves


def test_where_the_graph_allows_it_the_plan_picks_the_race_free_order():
    """web is at strict, api at permissive; `slow` (in the mesh from the start) has four phases to go,
    so the plan has four waves and api can spend one waiting for web to reach virtual addresses.
    """
    fleet = Fleet(
        (
            Service("api", "api", migrates=True),
            Service("web", "web", upstreams=("api",)),
            Service("slow", "slow"),
        ),
        "web",
    )
    start = {"api": P, "web": S, "slow": D}
    result = plan(fleet, start)
    assert len(result.waves) == 4
    assert_valid(fleet, start, result.waves)
    assert result.windows == [[], [], [], []]
    first = result.waves[0]
    assert (first["api"], first["web"]) == (P, V)  # web to virtual first ...
    assert result.waves[1]["api"] is S  # ... then api strict, with no plain-text caller left


def test_without_slack_the_fewest_waves_win_over_the_race_free_order():
    result = plan(DEMO, {"api": P, "web": S})
    assert len(result.waves) == 3
    assert len(result.windows[0]) == 1


def test_a_fleet_of_200_services_is_planned_within_the_rules():
    """How fast is `make bench`'s business (target: under a second); this holds what it answers for
    the same fleet: 40 services in the mesh from the start calling 80 migrating ones, which call 79 more."""
    fleet = parse_config(FLEET).fleet()
    check_graph(fleet)
    start = dict.fromkeys(fleet.names, D)
    result = plan(fleet, start)
    assert len(fleet.services) == 200
    assert len(result.waves) == 5
    assert_valid(fleet, start, result.waves)

"""Every import points one way: ops, devtools -> program -> components -> meshcheck, migration.

`migration/` is the product's spec in plain Python, so it imports no Pulumi and nothing of ours
above it; `components/` turns it into resources and never reaches into `program/`, which loads
config and composes; `ops/` and `devtools/` (what make, CI and developers run) sit on top. Two
programs run elsewhere and import nothing of ours: `meshcheck/` is the check Job's program (its
script runs alone in the Job's image), `consulbackup/` the snapshot Jobs' (likewise) and `policy/`
the policy pack (its own virtualenv). A
newcomer can then read each layer on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

OURS = ("migration", "components", "meshcheck", "consulbackup", "program", "ops", "devtools", "policy")
PULUMI = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes")

FORBIDDEN = {
    "migration": (*PULUMI, *(o for o in OURS if o != "migration")),
    "meshcheck": (*PULUMI, *(o for o in OURS if o != "meshcheck")),
    "consulbackup": (*PULUMI, *(o for o in OURS if o != "consulbackup")),
    "policy": tuple(o for o in OURS if o != "policy"),
    "components": ("program", "ops", "devtools", "policy"),
    "program": ("ops", "devtools", "policy"),
    "ops": ("devtools",),
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / layer).rglob("*.py")
        if ".venv" not in path.parts  # policy/.venv: the pack's own packages
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    }
    assert not wrong, sorted(wrong)


def test_the_layer_test_sees_real_imports():
    assert "migration.fleet" in imports(ROOT / "program" / "config.py")
    assert "pulumi" in imports(ROOT / "components" / "services.py")

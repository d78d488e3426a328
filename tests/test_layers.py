"""Every import points one way: stacks -> components -> migration.

`migration/` is the product's spec in plain Python, so it imports no Pulumi and nothing of ours
above it; `components/` turns it into resources and never reaches into `stacks/`, which loads
config and composes. A newcomer can then read each layer on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "migration": ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "components", "stacks", "tools", "policy"),
    "components": ("stacks", "tools", "policy"),
    "stacks": ("tools", "policy"),
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
        for name in imports(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    }
    assert not wrong, sorted(wrong)


def test_the_layer_test_sees_real_imports():
    assert "migration.fleet" in imports(ROOT / "stacks" / "config.py")
    assert "pulumi" in imports(ROOT / "components" / "services.py")

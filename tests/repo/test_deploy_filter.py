"""deploy.yml's `paths` filter covers everything the program reads, derived from the program itself.

Without this, a merge that changed migration/ or the check script (meshcheck/) deployed nothing:
the filter was written by hand and missed them. What the program reads is found twice: every
module `__main__.py` imports, followed statically through the repository (conditional imports
too), and every file of the repository a run of the program under mocks opens or imports (an
audit hook on `open`, in a fresh interpreter). The filter must also cover the locked packages the
program runs on and the policy pack every `up` runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
ALSO = ["requirements.txt", "policy/rules.py", "policy/__main__.py", "policy/requirements.txt"]

RUN = """
import json, os, sys
root = os.getcwd()
opened = set()
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.add(os.path.abspath(args[0]))
sys.addaudithook(hook)
from program.offline import run_program
assert run_program(stack="dev").error is None
files = opened | {os.path.abspath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
print(json.dumps(sorted(os.path.relpath(f, root) for f in files if f.startswith(root + os.sep))))
"""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """GitHub's filter patterns: `**` any characters, `*` any but `/` (docs: "Filter pattern cheat sheet")."""
    parts = re.split(r"(\*\*|\*)", pattern)
    return re.compile("".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts))


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_files(start: Path) -> set[str]:
    """The repository's modules reachable by `import` from `start` (packages' __init__ included)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # a.b.c imports a, a.b and a.b.c
                    found = _module_file(".".join(parts[:i]))
                    if found is not None:
                        todo.append(found)
    return {str(p.relative_to(ROOT)) for p in seen}


@pytest.fixture(scope="module")
def program_reads() -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    )
    ran = set(json.loads(result.stdout.splitlines()[-1])) & tracked  # not .venv, caches or state
    return ran | imported_files(ROOT / "__main__.py")


def test_every_file_the_program_reads_is_in_the_deploy_filter(program_reads):
    push = (yaml.safe_load(DEPLOY.read_text()).get("on") or yaml.safe_load(DEPLOY.read_text())[True])["push"]
    patterns = {p: glob_regex(p) for p in push["paths"]}
    assert {"migration/step.py", "meshcheck/mesh_check.py", "program/config.py", "Pulumi.dev.yaml"} <= program_reads
    missing = sorted(f for f in program_reads | set(ALSO) if not any(r.fullmatch(f) for r in patterns.values()))
    assert missing == []
    dead = [p for p, r in patterns.items() if not any(r.fullmatch(f) for f in program_reads | set(ALSO))]
    assert dead == []
    for unread in ("README.md", "docs/reference/security.md", "tests/conftest.py", "ops/demo.py"):
        assert not any(r.fullmatch(unread) for r in patterns.values()), unread
    assert push["branches"] == ["main"]


def test_the_static_import_walk_follows_from_imports_into_packages():
    """Guards the walk above against passing because it finds nothing."""
    found = imported_files(ROOT / "__main__.py")
    assert {"__main__.py", "program/compose.py", "components/cluster.py", "migration/fleet.py"} <= found

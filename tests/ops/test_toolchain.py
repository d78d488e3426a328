"""ops/toolchain.py: which Pulumi and AWS CLIs `make up` (and preview, destroy, demo) runs.

A user's own CLI is used as it is when it will do; otherwise the pinned one is installed into .venv and
used from there. Fakes stand in for PATH, the CLIs and the installers: no network, nothing installed.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from ops import toolchain
from program.versions import PULUMI_CLI

PIN = "3.272.0"


class FakeMachine:
    """PATH lookups, `pulumi version` answers and an installer that puts the pinned CLI in place."""

    def __init__(self, on_path: dict[str, str], versions: dict[Path, str], installs_version: str = PIN) -> None:
        self.on_path = on_path
        self.versions = versions
        self.installs_version = installs_version
        self.installed: list[tuple[Path, str]] = []
        self.said: list[str] = []

    def which(self, name: str) -> str | None:
        return self.on_path.get(name)

    def version_of(self, path: Path) -> toolchain.Version | None:
        return toolchain.parse_version(self.versions[path]) if path in self.versions else None

    def install(self, root: Path, version: str) -> None:
        self.installed.append((root, version))
        self.versions[root / "bin" / "pulumi"] = "v" + self.installs_version

    def resolve(self, root: Path) -> Path:
        return toolchain.resolve_pulumi(
            self.which, self.version_of, self.install, pin=PIN, root=root, say=self.said.append
        )


def test_without_pulumi_the_pinned_cli_is_installed_into_the_project_and_used(tmp_path):
    machine = FakeMachine(on_path={}, versions={})
    path = machine.resolve(tmp_path / "pulumi")
    assert path == tmp_path / "pulumi" / "bin" / "pulumi"
    assert machine.installed == [(tmp_path / "pulumi", PIN)]
    where = tmp_path / "pulumi"
    assert machine.said == [
        f"Installing the Pulumi CLI {PIN} into {where} (no pulumi on PATH); your PATH is left as it is."
    ]


def test_an_older_pulumi_on_path_is_passed_over_for_the_pinned_one(tmp_path):
    machine = FakeMachine(
        on_path={"pulumi": "/usr/local/bin/pulumi"}, versions={Path("/usr/local/bin/pulumi"): "v3.100.0"}
    )
    path = machine.resolve(tmp_path)
    assert path == tmp_path / "bin" / "pulumi"
    assert machine.installed == [(tmp_path, PIN)]
    assert "/usr/local/bin/pulumi is 3.100.0, older than 3.272.0" in machine.said[0]


@pytest.mark.parametrize("version", ["v3.272.0", "v3.280.1", "v3.273.0-alpha.1+abcdef"])
def test_your_own_pulumi_at_the_pin_or_newer_is_used_as_it_is(tmp_path, version):
    machine = FakeMachine(
        on_path={"pulumi": "/opt/pulumi/bin/pulumi"}, versions={Path("/opt/pulumi/bin/pulumi"): version}
    )
    assert machine.resolve(tmp_path) == Path("/opt/pulumi/bin/pulumi")
    assert machine.installed == [] and machine.said == []


def test_a_pulumi_of_another_major_version_is_not_used_since_the_sdk_refuses_it(tmp_path):
    machine = FakeMachine(on_path={"pulumi": "/usr/bin/pulumi"}, versions={Path("/usr/bin/pulumi"): "v4.0.0"})
    assert machine.resolve(tmp_path) == tmp_path / "bin" / "pulumi"
    assert "another major version" in machine.said[0]


def test_the_pinned_cli_installed_before_is_reused_without_installing_again(tmp_path):
    machine = FakeMachine(on_path={}, versions={tmp_path / "bin" / "pulumi": "v" + PIN})
    assert machine.resolve(tmp_path) == tmp_path / "bin" / "pulumi"
    assert machine.installed == []


def test_an_install_that_leaves_another_version_is_an_error(tmp_path):
    machine = FakeMachine(on_path={}, versions={}, installs_version="3.1.0")
    with pytest.raises(toolchain.CliError, match=r"left 3\.1\.0 there"):
        machine.resolve(tmp_path)


def fake_pulumi(folder: Path, version: str) -> Path:
    """An executable `pulumi` that answers `pulumi version` like the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pulumi"
    path.write_text(f'#!/bin/sh\n[ "$1" = version ] && echo {version}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_real_lookups_read_the_version_a_pulumi_on_path_prints(tmp_path, monkeypatch):
    mine = fake_pulumi(tmp_path / "mine", "v3.290.0")
    monkeypatch.setenv("PATH", f"{mine.parent}{os.pathsep}{os.environ['PATH']}")
    assert toolchain.version_of(mine) == (3, 290, 0)
    assert toolchain.version_of(tmp_path / "missing") is None

    def install(root: Path, version: str) -> None:
        raise AssertionError("nothing to install")

    assert (
        toolchain.resolve_pulumi(toolchain.shutil.which, toolchain.version_of, install, root=tmp_path / "ours") == mine
    )


def test_the_installer_is_the_automation_apis_for_exactly_the_pinned_version(tmp_path, monkeypatch):
    from pulumi import automation as auto
    from semver import VersionInfo

    calls = []
    monkeypatch.setattr(auto.PulumiCommand, "install", classmethod(lambda cls, **kw: calls.append(kw)))
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: f"/usr/bin/{name}")
    toolchain.install_pulumi(tmp_path / "pulumi", PIN)
    assert calls == [{"root": str(tmp_path / "pulumi"), "version": VersionInfo.parse(PIN)}]


def test_a_failed_install_says_in_one_line_what_to_do(tmp_path, monkeypatch):
    from pulumi import automation as auto

    def offline(cls, **kw):
        raise subprocess.CalledProcessError(
            1, ["install.sh"], output=b"+ Downloading\ncurl: (6) Could not resolve host\n"
        )

    monkeypatch.setattr(auto.PulumiCommand, "install", classmethod(offline))
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(toolchain.CliError) as e:
        toolchain.install_pulumi(tmp_path, PIN)
    assert "\n" not in str(e.value)
    assert "curl: (6) Could not resolve host" in str(e.value)
    assert f"Install Pulumi {PIN} or newer yourself (https://www.pulumi.com/docs/install/)" in str(e.value)


def test_the_installer_asks_for_curl_before_downloading_anything(tmp_path, monkeypatch):
    from pulumi import automation as auto

    monkeypatch.setattr(auto.PulumiCommand, "install", classmethod(lambda cls, **kw: pytest.fail("no download")))
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None if name == "curl" else f"/usr/bin/{name}")
    with pytest.raises(toolchain.CliError, match="needs curl: install it"):
        toolchain.install_pulumi(tmp_path, PIN)


def test_the_demo_tool_drives_the_same_cli(monkeypatch):
    """ops/demo.py's LocalWorkspace gets a PulumiCommand for the CLI `make` chose."""
    from pulumi import automation as auto

    made = []
    monkeypatch.setattr(auto, "PulumiCommand", lambda **kw: made.append(kw) or kw)
    monkeypatch.setattr(toolchain, "pulumi_path", lambda: toolchain.PULUMI_ROOT / "bin" / "pulumi")
    toolchain.pulumi_command()
    monkeypatch.setattr(toolchain, "pulumi_path", lambda: Path("/usr/local/bin/pulumi"))
    toolchain.pulumi_command()
    assert [kw.get("root") for kw in made] == [str(toolchain.PULUMI_ROOT), None]  # None: `pulumi` from PATH
    assert all(str(kw["version"]) == PULUMI_CLI for kw in made)


def test_main_prints_only_the_path_for_the_makefile(monkeypatch, capsys):
    monkeypatch.setattr(toolchain, "pulumi_path", lambda: Path("/x/bin/pulumi"))
    assert toolchain.main(["pulumi"]) == 0
    assert capsys.readouterr().out == "/x/bin/pulumi\n"

    def broken() -> Path:
        raise toolchain.CliError("could not install the Pulumi CLI")

    monkeypatch.setattr(toolchain, "pulumi_path", broken)
    assert toolchain.main(["pulumi"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "make: could not install the Pulumi CLI\n"


# --- the AWS CLI --------------------------------------------------------------------------------------


class FakeAws:
    def __init__(self, found: str | None, current: bool = True) -> None:
        self.found, self.is_current, self.installs, self.said = found, current, 0, []

    def resolve(self, link: Path) -> Path:
        def install() -> None:
            self.installs += 1

        return toolchain.resolve_aws(
            lambda name: self.found, lambda: self.is_current, install, venv=link.parent, link=link, say=self.said.append
        )


def test_your_own_aws_is_used_and_nothing_is_installed(tmp_path):
    aws = FakeAws(found="/usr/local/bin/aws")
    assert aws.resolve(tmp_path / "aws-bin" / "aws") == Path("/usr/local/bin/aws")
    assert aws.installs == 0 and aws.said == []


def test_without_aws_the_locked_awscli_is_installed_and_says_so(tmp_path):
    aws = FakeAws(found=None)
    link = tmp_path / "aws-bin" / "aws"
    assert aws.resolve(link) == link
    assert aws.installs == 1
    assert "Installing the AWS CLI from requirements-aws.txt" in aws.said[0] and "no aws on PATH" in aws.said[0]


def test_the_installed_awscli_follows_its_lock(tmp_path):
    link = tmp_path / "aws-bin" / "aws"
    current = FakeAws(found=str(link), current=True)
    assert current.resolve(link) == link and current.installs == 0
    stale = FakeAws(found=str(link), current=False)
    assert stale.resolve(link) == link and stale.installs == 1
    assert "the lock changed" in stale.said[0]


def test_the_awscli_install_is_hash_checked_in_a_venv_of_its_own(tmp_path, monkeypatch):
    venv, link, lock = tmp_path / "aws", tmp_path / "aws-bin" / "aws", tmp_path / "requirements-aws.txt"
    lock.write_text("awscli==1.46.3 --hash=sha256:00\n")
    ran = []

    def run(args, check):
        ran.append([str(a) for a in args])
        if args[1:3] == ["-m", "venv"]:
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "aws").write_text("#!/bin/sh\n")

    monkeypatch.setattr(toolchain.subprocess, "run", run)
    toolchain.install_aws(venv, link, lock)
    assert ran[0][1:] == ["-m", "venv", "--clear", str(venv)]
    assert ran[1] == [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--require-hashes",
        "-r",
        str(lock),
    ]
    assert link.resolve() == (venv / "bin" / "aws").resolve()
    assert toolchain.aws_current(venv, lock)
    lock.write_text("awscli==1.47.0 --hash=sha256:11\n")
    assert not toolchain.aws_current(venv, lock)

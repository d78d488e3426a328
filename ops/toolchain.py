"""Which Pulumi and AWS CLIs `make` runs, installing the pinned ones into .venv when they are missing.

    python -m ops.toolchain pulumi   print the path of the Pulumi CLI to run (installing it first if needed)
    python -m ops.toolchain aws      print the path of the `aws` that Pulumi will find (installing it first if needed)

Pulumi: a `pulumi` on PATH at PULUMI_CLI (program/versions.py) or newer, within the same major version,
is used as it is. Otherwise exactly PULUMI_CLI is installed into .venv/pulumi by the Python SDK's
Automation API (`PulumiCommand.install`, which runs the get.pulumi.com install script; that needs curl
and tar) and used from there; your PATH and ~/.pulumi are left alone.

AWS: an EKS kubeconfig runs `aws eks get-token`. An `aws` on PATH is used as it is. Without one, the
AWS CLI (awscli v1 from PyPI, hash-checked from requirements-aws.txt) goes into its own environment,
.venv/aws, and is linked as .venv/aws-bin/aws: the Makefile appends that folder to PATH, so it never
shadows an `aws` of yours.

The decisions (`resolve_pulumi`, `resolve_aws`) take the lookups and the installers as arguments, so
tests give them fakes; the rest of this module is the real thing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from program.versions import PULUMI_CLI

if TYPE_CHECKING:
    from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PULUMI_ROOT = VENV / "pulumi"  # PulumiCommand's layout: <root>/bin/pulumi
AWS_VENV = VENV / "aws"
AWS_BIN = VENV / "aws-bin"  # holds only the `aws` link; the Makefile appends it to PATH
AWS_LOCK = ROOT / "requirements-aws.txt"
INSTALL_DOCS = "https://www.pulumi.com/docs/install/"

Version = tuple[int, int, int]
Say = Callable[[str], object]


class CliError(Exception):
    """A CLI that cannot be had; the message says what to do."""


def parse_version(text: str) -> Version | None:
    """'v3.272.0' (what `pulumi version` prints), '3.272.0', 'v3.273.0-alpha.1+abc' -> (3, 272, 0)."""
    match = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _show(v: Version) -> str:
    return ".".join(map(str, v))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- the decisions --------------------------------------------------------------------------------


def resolve_pulumi(
    which: Callable[[str], str | None],
    version_of: Callable[[Path], Version | None],
    install: Callable[[Path, str], object],
    *,
    pin: str = PULUMI_CLI,
    root: Path = PULUMI_ROOT,
    say: Say = print,
) -> Path:
    """The Pulumi CLI to run: yours if it is `pin` or newer (same major), else `pin` in `root`, installed if need be."""
    wanted = parse_version(pin)
    if wanted is None:
        raise CliError(f"PULUMI_CLI in program/versions.py is {pin!r}, not a version such as 3.272.0")
    found = which("pulumi")
    if found is None:
        why = "no pulumi on PATH"
    else:
        have = version_of(Path(found))
        if have is not None and have[0] == wanted[0] and have >= wanted:
            return Path(found)
        if have is None:
            why = f"{found} does not say its version"
        elif have[0] != wanted[0]:
            why = f"{found} is {_show(have)}, another major version than this SDK's {wanted[0]}.x"
        else:
            why = f"{found} is {_show(have)}, older than {pin}"
    local = root / "bin" / "pulumi"
    if version_of(local) == wanted:
        return local
    say(f"Installing the Pulumi CLI {pin} into {_rel(root)} ({why}); your PATH is left as it is.")
    install(root, pin)
    have = version_of(local)
    if have != wanted:
        got = "nothing" if have is None else _show(have)
        raise CliError(f"installing the Pulumi CLI {pin} into {_rel(root)} left {got} there; see {INSTALL_DOCS}")
    return local


def resolve_aws(
    which: Callable[[str], str | None],
    current: Callable[[], bool],
    install: Callable[[], object],
    *,
    venv: Path = AWS_VENV,
    link: Path = AWS_BIN / "aws",
    say: Say = print,
) -> Path:
    """The `aws` Pulumi will run: yours if there is one, else ours, (re)installed from the lock unless current."""
    found = which("aws")
    ours = found is not None and Path(found) == link
    if found is not None and not ours:
        return Path(found)
    if ours and current():
        return link
    why = "the lock changed" if ours else "no aws on PATH"
    say(
        f"Installing the AWS CLI from {AWS_LOCK.name} into {_rel(venv)} ({why}; an EKS kubeconfig runs "
        "`aws eks get-token`); about 200 MB, under a minute."
    )
    install()
    return link


# --- the real lookups and installers ----------------------------------------------------------------


def version_of(path: Path) -> Version | None:
    """What `<path> version` says, or None if it cannot run."""
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True, env=env, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_version(out.stdout)


def install_pulumi(root: Path, version: str) -> None:
    """PulumiCommand.install: downloads get.pulumi.com's install script and runs it for exactly `version`."""
    if os.name != "nt":
        missing = [tool for tool in ("curl", "tar") if shutil.which(tool) is None]
        if missing:
            raise CliError(
                f"the Pulumi CLI installer needs {' and '.join(missing)}: install it (Debian/Ubuntu: "
                f"apt-get install {' '.join(missing)}), or install Pulumi {version} yourself: {INSTALL_DOCS}"
            )
    from pulumi import automation as auto
    from semver import VersionInfo

    try:
        auto.PulumiCommand.install(root=str(root), version=VersionInfo.parse(version))
    except Exception as e:  # any failure of the download or the script: say it in one line
        detail = getattr(e, "output", b"") or b""
        last = (detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)).strip().splitlines()
        reason = last[-1] if last else str(e)
        raise CliError(
            f"could not install the Pulumi CLI {version} into {_rel(root)}: {reason}. "
            f"Install Pulumi {version} or newer yourself ({INSTALL_DOCS}) and run make again."
        ) from e


def _aws_stamp(venv: Path) -> Path:
    return venv / "installed-from.txt"


def aws_current(venv: Path = AWS_VENV, lock: Path = AWS_LOCK) -> bool:
    """Whether .venv/aws was installed from the lock as it is now."""
    stamp = _aws_stamp(venv)
    return stamp.exists() and stamp.read_text() == lock.read_text()


def install_aws(venv: Path = AWS_VENV, link: Path = AWS_BIN / "aws", lock: Path = AWS_LOCK) -> None:
    """A venv of its own for awscli, installed from its hashed lock; `link` points at its `aws`."""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)]
        subprocess.run(pip, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise CliError(f"could not install the AWS CLI into {_rel(venv)}: {e}") from e
    _aws_stamp(venv).write_text(lock.read_text())
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(venv / "bin" / "aws")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pulumi_path() -> Path:
    return resolve_pulumi(shutil.which, version_of, install_pulumi, say=_stderr)


def aws_path() -> Path:
    def which(name: str) -> str | None:  # the PATH the Makefile gives Pulumi: yours, then ours
        return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), str(AWS_BIN)]))

    return resolve_aws(which, aws_current, install_aws, say=_stderr)


def pulumi_command() -> auto.PulumiCommand:
    """The Automation API's handle on the same CLI `make` runs (ops/demo.py)."""
    from pulumi import automation as auto
    from semver import VersionInfo

    path = pulumi_path()
    minimum = VersionInfo.parse(PULUMI_CLI)
    if path == PULUMI_ROOT / "bin" / "pulumi":
        return auto.PulumiCommand(root=str(PULUMI_ROOT), version=minimum)
    return auto.PulumiCommand(version=minimum)  # yours: `pulumi` from PATH, which is `path`


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["pulumi"], ["aws"]):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        path = pulumi_path() if args == ["pulumi"] else aws_path()
    except CliError as e:
        print(f"make: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

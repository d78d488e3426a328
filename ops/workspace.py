"""The one Automation API workspace the commands that drive stacks open (make advance, make demo).

    open_workspace(root, env) -> pulumi.automation.LocalWorkspace
        work_dir     the checkout: Pulumi.yaml, the stack files, the program
        backend      $PULUMI_BACKEND_URL, or the local file backend `make` uses (ops/backend.py)
        pulumi       the CLI `make` runs: yours if new enough, else the pinned one (ops/toolchain.py)
        aws          on the PATH the CLI gets: yours first, else the pinned AWS CLI (EKS kubeconfigs run it)

The CLIs are resolved (and installed when missing) only here, when a command is about to talk to
Pulumi: `--help` and argument errors need neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pulumi import automation as auto

from ops import toolchain
from ops.backend import backend_url

ROOT = Path(__file__).resolve().parent.parent


class WorkspaceError(Exception):
    """No CLI to drive the stacks with; the message says what to install."""


def open_workspace(root: Path = ROOT, env: Mapping[str, str] = os.environ) -> auto.LocalWorkspace:
    url = backend_url(env, root)
    try:
        command = toolchain.pulumi_command()
        toolchain.aws_path()
    except toolchain.CliError as e:
        raise WorkspaceError(str(e)) from e
    # As the Makefile does: the AWS CLI it installs comes after yours on the PATH, never before it.
    path = os.pathsep.join([env.get("PATH", ""), str(toolchain.AWS_BIN)])
    return auto.LocalWorkspace(
        work_dir=str(root), env_vars={"PULUMI_BACKEND_URL": url, "PATH": path}, pulumi_command=command
    )

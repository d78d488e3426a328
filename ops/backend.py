"""Where a stack's state lives, and what that means for who can change it.

    python -m ops.backend --stack dev      a warning on stderr for an EKS stack on the local file backend

Pulumi's self-managed ("DIY") backends keep each stack's checkpoint and a lock file per update
(`.pulumi/locks/<org>/<project>/<stack>/<id>.json`, pulumi pkg/backend/diy/lock.go `Lock`) in one
bucket or folder. The local file backend `make` defaults to (`<repo>/.pulumi-state`) is on one
machine: nobody else sees its lock, and the state of an EKS cluster goes with the folder. So an EKS
stack there gets a warning pointing at S3 (the same locks, shared) or Pulumi Cloud, and CI never
runs a demo on it: a runner's disk is gone after the job, with the only record of its cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from program.config import PROJECT

ROOT = Path(__file__).resolve().parent.parent
LOCAL_STATE = ".pulumi-state"
DEFAULT_PLATFORM = "eks"  # Pulumi.yaml's default for `platform`


def backend_url(env: Mapping[str, str], root: Path = ROOT) -> str:
    """$PULUMI_BACKEND_URL, or the local file backend `make` uses (an empty variable counts as unset)."""
    return env.get("PULUMI_BACKEND_URL") or f"file://{root}/{LOCAL_STATE}"


def in_ci(env: Mapping[str, str]) -> bool:
    """GitHub Actions (and most CI systems) set CI=true; GitHub also sets GITHUB_ACTIONS=true."""
    return env.get("CI", "").lower() == "true" or env.get("GITHUB_ACTIONS", "").lower() == "true"


def is_local(url: str) -> bool:
    return url.startswith("file://")


def _stack_file(stack: str, root: Path) -> dict[str, Any]:
    path = root / f"Pulumi.{stack}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def stack_platform(stack: str, root: Path = ROOT) -> str:
    """The `platform` the stack file sets (Pulumi.yaml's default when it sets none)."""
    return str((_stack_file(stack, root).get("config") or {}).get(f"{PROJECT}:platform", DEFAULT_PLATFORM))


def new_key_note(stack: str, root: Path = ROOT) -> str | None:
    """A stack file that names a KMS secrets provider but no `encryptedkey` gets one written at the
    first use (pulumi pkg/secrets/cloud/manager.go NewCloudSecretsManager): it is to be committed."""
    document = _stack_file(stack, root)
    provider = str(document.get("secretsprovider") or "")
    if "://" not in provider or provider.startswith("passphrase") or document.get("encryptedkey"):
        return None
    return (
        f"note: Pulumi.{stack}.yaml names the secrets provider {provider} and no encryptedkey yet: this run "
        f"writes one (the stack's data key, encrypted by KMS, not a secret). Commit Pulumi.{stack}.yaml "
        "afterwards, so that CI and your colleagues use the same key."
    )


def remote_state_advice() -> str:
    return (
        "keep it in S3 (PULUMI_BACKEND_URL=s3://<bucket>/consul-mesh-migration?region=<region>, bucket "
        "versioning on: every update takes a lock file there, so two people never update it at once) "
        "or in Pulumi Cloud (PULUMI_BACKEND_URL=https://api.pulumi.com)"
    )


def local_state_warning(stack: str, url: str, platform: str) -> str | None:
    """One warning for an EKS stack whose state is a folder on this machine; None otherwise."""
    if platform != "eks" or not is_local(url):
        return None
    return (
        f"warning: stack {stack} (platform eks) keeps its state in {url}, on this machine only: no one "
        "else can see or update it, its lock protects nobody else, and losing the folder orphans the "
        f"cluster. For a stack a team shares, {remote_state_advice()}."
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.backend", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    warning = local_state_warning(args.stack, backend_url(env, root), stack_platform(args.stack, root))
    for line in (warning, new_key_note(args.stack, root)):
        if line:
            print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one security context of every pod the program runs itself (the demo's services, the check Jobs,
the snapshot Jobs): no privilege escalation, no capabilities, a read-only root, a user that is not root
and the runtime's seccomp profile. That is what Pod Security's `restricted` level asks of a pod
(kubernetes pod-security-admission policy: allowPrivilegeEscalation, capabilities, runAsNonRoot,
seccompProfile), with a read-only root besides."""

from __future__ import annotations

import pulumi_kubernetes as k8s

NOBODY = 65534  # for stock images that run as root unless told otherwise


def restricted_container() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def restricted_pod(run_as: int, fs_group: int | None = None) -> k8s.core.v1.PodSecurityContextArgs:
    """`fs_group`: the group that may read the pod's mounted volumes (Secrets mounted 0440)."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=run_as,
        run_as_group=run_as,
        fs_group=fs_group,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )

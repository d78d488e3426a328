"""The Kubernetes cluster the in-cluster components deploy to, whatever the platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class ClusterTarget:
    """What every in-cluster component needs from the platform layer."""

    platform: Literal["eks", "kubernetes"]
    provider: k8s.Provider
    # Everything that creates a Kubernetes Service or a PersistentVolumeClaim waits for these: on eks
    # the load balancer controller, which must outlive the load balancers it releases on destroy, and
    # the default StorageClass Consul's servers need. Empty on an existing cluster.
    ready: list[pulumi.Resource] = field(default_factory=list)
    cluster_name: pulumi.Output[str] | None = None


def after(base: pulumi.Output[list[pulumi.Resource]], *more: pulumi.Resource) -> pulumi.Output[list[pulumi.Resource]]:
    """`base` (a depends_on list that resolves only once the phase guard passes) plus `more`."""
    return base.apply(lambda deps: [*deps, *more])


@dataclass
class ExistingClusterArgs:
    kubeconfig: str | None  # path; None: the ambient kubeconfig ($KUBECONFIG or ~/.kube/config)
    context: str | None


class ExistingCluster(pulumi.ComponentResource):
    """platform `kubernetes`: a provider for a cluster that already exists (kind, or any context)."""

    provider: k8s.Provider

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("consul-mesh-migration:kubernetes:ExistingCluster", name, None, opts)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=args.kubeconfig,  # a path or the file's contents; the provider reads it
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})

    def target(self) -> ClusterTarget:
        return ClusterTarget(platform="kubernetes", provider=self.provider)

"""The cluster the in-cluster components deploy to, whatever the platform, and the gate every
migration object waits behind.

    Platform        "eks" (Network -> EksCluster -> LoadBalancerController) or "kubernetes" (ExistingCluster)
    ClusterTarget   what the in-cluster components need of it: the platform, the Kubernetes provider
                    (passed once, through opts, at the call site), what must exist first, the cluster name
    Gate            the phase guard's verdict and what every migration object waits for after it
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from migration.step import Step

Platform = Literal["eks", "kubernetes"]


@dataclass(frozen=True)
class ClusterTarget:
    """What every in-cluster component needs from the platform layer."""

    platform: Platform
    provider: k8s.Provider  # the caller passes it in opts (`providers=[...]`); children inherit it
    # Everything that creates a Kubernetes Service or a PersistentVolumeClaim waits for these: on eks
    # the load balancer controller, which must outlive the load balancers it releases on destroy, and
    # the default StorageClass Consul's servers need. Empty on an existing cluster.
    ready: list[pulumi.Resource] = field(default_factory=list)
    cluster_name: pulumi.Output[str] | None = None
    api_server: pulumi.Output[str] | None = None  # the API server's URL as the kubeconfig has it (eks)

    def providers(self) -> pulumi.ResourceOptions:
        """The options a component on this cluster is created with: its children inherit the provider."""
        return pulumi.ResourceOptions(providers=[self.provider])


@dataclass(frozen=True)
class Gate:
    """The one way a migration object waits: for the phase guard, then for what it needs.

    `step` resolves only once the guard let the step through; a refused step fails it, so nothing that
    depends on it is registered and no migration object changes. `first` is what every migration
    object needs before it: the platform's readiness and the Consul release (its CRDs and controllers).
    """

    step: pulumi.Output[Step]
    first: Sequence[pulumi.Resource]

    def then(self, *more: pulumi.Resource) -> Gate:
        """The same gate, with `more` to wait for first (the config entries wait for the precheck)."""
        return Gate(self.step, [*self.first, *more])

    def component(self, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
        """A component's options: it waits for the guard and for `first`."""
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=self.on()))

    def on(self, *more: pulumi.Resource) -> pulumi.Output[list[pulumi.Resource]]:
        """A child's depends_on: the guard, `first` and `more`."""
        return self.step.apply(lambda _: [*self.first, *more])

    def verdict(self, *more: pulumi.Resource) -> pulumi.Output[list[pulumi.Resource]]:
        """A child's depends_on: the guard and `more` only. For objects that reach `first` through
        what they need (fewer edges keep a fleet of hundreds of services quick to evaluate)."""
        return self.step.apply(lambda _: list(more))


@dataclass
class ExistingClusterArgs:
    kubeconfig: str | None  # path; None: the ambient kubeconfig ($KUBECONFIG or ~/.kube/config)
    context: str | None


class ExistingCluster(pulumi.ComponentResource):
    """platform `kubernetes`: a provider for a cluster that already exists (kind, or any context)."""

    provider: k8s.Provider

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
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

"""The team's own workloads: read live, refused before any migration object changes, and changed only
through one server-side-apply patch each (what the patch holds and why: migration/adoption.py).

    reads (get, at preview and at up)   <Kind> ns/name, Service ns/<service>, Namespace ns
    lives                               what they hold, as the model's plain data; program/gate.py
                                        refuses on it before any migration object changes
    patches()                           DeploymentPatch | StatefulSetPatch `<name>-<service>`, field
                                        manager `consul-mesh-migration`, never forced; and ServicePatch
                                        `<name>-<service>-catalog-sync` on the team's Service

pulumi-kubernetes (4.34.2; provider/pkg/await/await.go `Creation`/`ssaUpdate`) sends a patch's inputs
as a server-side apply with the `pulumi.com/patchFieldManager` name, and awaits the workload's own
rollout (the awaiter is picked by the object's kind: apps/v1 Deployment or StatefulSet). Deleting a
patch (`ssa.Relinquish`) gives its fields back and awaits nothing, so the program never deletes one to
step back: every phase keeps the patch and drops the fields it no longer needs. One patch per workload,
its URN never changing: two resources sharing one field manager would take each other's fields.

The Service's patch says `consul.hashicorp.com/service-sync` "true" while the service has pods outside
the mesh and "false" from the phase whose pods are all in it (migration/workloads.py `catalog_synced`);
catalog sync registers only Services that say "true" (components/consul_values.py), so a step back to
permissive registers the pods outside the mesh once more. pulumi-kubernetes awaits that patch as it
awaits any Service (await/service.go: a Service with a selector waits for a ready endpoint), which the
workload's own pods give it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from migration import adoption as model
from migration.fleet import Fleet, Service
from migration.phases import Phase
from migration.workloads import catalog_synced

from .annotations import (
    EXCLUDE_INBOUND_PORTS,
    INJECT,
    OVERWRITE_PROBES,
    PATCH_FIELD_MANAGER,
    SERVICE_PORT,
    SERVICE_SYNC,
    TPROXY_EXCLUDE_OUTBOUND_CIDRS,
    TRANSPARENT_PROXY,
)
from .config_entries import ConfigEntries
from .target import Gate

# Keys the program only reads (consul-k8s v2.0.3): the Consul service name a pod registers as
# (`connect-inject/constants`), the label that makes the endpoints controller skip a Service, and the
# namespace label the chart's default connectInject.namespaceSelector leaves out
# (`charts/consul/values.yaml`: `openshift.io/cluster-monitoring DoesNotExist`).
SERVICE_NAME = "consul.hashicorp.com/connect-service"
SERVICE_IGNORE = "consul.hashicorp.com/service-ignore"
INJECTOR_SKIPS_LABEL = "openshift.io/cluster-monitoring"


# --- reading what `get` returns (the SDK's snake_case outputs) into the model's plain data -------


def _int_or_str(value: Any) -> int | str | None:
    """An IntOrString field (the SDK hands numbers over as floats)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value)
    return int(text) if text.isdigit() else text


def _probes(c: Mapping[str, Any]) -> tuple[model.Probe, ...]:
    out = []
    for kind in ("liveness", "readiness", "startup"):
        p = c.get(f"{kind}_probe") or {}
        for handler, key in (("httpGet", "http_get"), ("tcpSocket", "tcp_socket"), ("grpc", "grpc"), ("exec", "exec")):
            h = p.get(key)
            if h is not None:
                port = _int_or_str(h.get("port")) if handler != "exec" else None
                out.append(model.Probe(kind, handler, port, str(h.get("scheme") or "HTTP")))
    return tuple(out)


def _container(c: Mapping[str, Any]) -> model.Container:
    ports = tuple(
        model.ContainerPort(int(p["container_port"]), str(p.get("name") or ""), str(p.get("protocol") or "TCP"))
        for p in c.get("ports") or []
    )
    env = {str(e["name"]): (e.get("value") if e.get("value_from") is None else None) for e in c.get("env") or []}
    lifecycle = c.get("lifecycle") or {}
    return model.Container(str(c["name"]), ports, _probes(c), lifecycle.get("pre_stop") is not None, env)


def read_workload(
    kind: str, metadata: Mapping[str, Any] | None, spec: Mapping[str, Any] | None
) -> model.LiveWorkload | None:
    """The model's view of a Deployment or StatefulSet read live; None when nothing was read (offline)."""
    if not metadata or not spec or not spec.get("template"):
        return None
    template = spec["template"]
    pod = template.get("spec") or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    managed = list(metadata.get("managed_fields") or [])
    strategy = spec.get("strategy") or spec.get("update_strategy") or {}
    rolling = strategy.get("rolling_update") or {}
    path = ("spec", "template", "metadata", "annotations", INJECT)
    direct_path = ("spec", "template", "metadata", "annotations", TPROXY_EXCLUDE_OUTBOUND_CIDRS)
    return model.LiveWorkload(
        kind=kind,
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        labels=dict(tmeta.get("labels") or {}),
        containers=tuple(_container(c) for c in pod.get("containers") or []),
        inject=annotations.get(INJECT),
        inject_owners=tuple(model.owners(managed, path)),
        transparent_proxy=annotations.get(TRANSPARENT_PROXY),
        registers_as=annotations.get(SERVICE_NAME),
        direct=annotations.get(TPROXY_EXCLUDE_OUTBOUND_CIDRS),
        direct_owners=tuple(model.owners(managed, direct_path)),
        service_account=str(pod.get("service_account_name") or "default"),
        host_network=bool(pod.get("host_network")),
        grace_seconds=int(pod.get("termination_grace_period_seconds") or 30),
        replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        strategy=str(strategy.get("type") or ("RollingUpdate")),
        max_surge=_int_or_str(rolling.get("max_surge")),
        max_unavailable=_int_or_str(rolling.get("max_unavailable")),
        partition=int(rolling.get("partition") or 0),
        paused=bool(spec.get("paused")),
        managed_fields=managed,
    )


def read_service(metadata: Mapping[str, Any] | None, spec: Mapping[str, Any] | None) -> model.LiveService:
    metadata, spec = metadata or {}, spec or {}
    ports = tuple(
        model.ServicePort(int(p["port"]), _int_or_str(p.get("target_port")), str(p.get("name") or ""))
        for p in spec.get("ports") or []
    )
    labels = metadata.get("labels") or {}
    sync = (metadata.get("annotations") or {}).get(SERVICE_SYNC)
    managed = list(metadata.get("managed_fields") or [])
    return model.LiveService(
        str(metadata.get("name") or ""),
        dict(spec.get("selector") or {}),
        ports,
        ignored=str(labels.get(SERVICE_IGNORE, "")).lower() == "true",
        sync=None if sync is None else str(sync),
        sync_owners=tuple(model.owners(managed, ("metadata", "annotations", SERVICE_SYNC))),
    )


def read_namespace(metadata: Mapping[str, Any] | None) -> model.LiveNamespace:
    metadata = metadata or {}
    return model.LiveNamespace(str(metadata.get("name") or ""), INJECTOR_SKIPS_LABEL in (metadata.get("labels") or {}))


# --- the patch, as pulumi-kubernetes inputs ---------------------------------------------------------


def template_annotations(p: model.Patch) -> dict[str, str]:
    """consul-k8s v2.0.3's annotations for what the phase asks (connect-inject/constants)."""
    direct = {TPROXY_EXCLUDE_OUTBOUND_CIDRS: ",".join(p.direct)} if p.direct else {}
    if not p.inject:
        return direct
    out = {INJECT: "true", TRANSPARENT_PROXY: "true", OVERWRITE_PROBES: "true", **direct}
    if p.service_port is not None:
        out[SERVICE_PORT] = str(p.service_port)
    if p.exclude_inbound_ports:
        out[EXCLUDE_INBOUND_PORTS] = ",".join(str(n) for n in p.exclude_inbound_ports)
    return out


def _template(p: model.Patch) -> k8s.core.v1.PodTemplateSpecPatchArgs | None:
    containers = None
    if p.container is not None:
        lifecycle = None
        if p.pre_stop_seconds is not None:
            sleep = k8s.core.v1.SleepActionPatchArgs(seconds=p.pre_stop_seconds)
            lifecycle = k8s.core.v1.LifecyclePatchArgs(pre_stop=k8s.core.v1.LifecycleHandlerPatchArgs(sleep=sleep))
        env = [k8s.core.v1.EnvVarPatchArgs(name=k, value=v) for k, v in sorted(p.env.items())] or None
        containers = [k8s.core.v1.ContainerPatchArgs(name=p.container, lifecycle=lifecycle, env=env)]
    annotations = template_annotations(p)
    if not annotations and containers is None:
        return None
    return k8s.core.v1.PodTemplateSpecPatchArgs(
        metadata=k8s.meta.v1.ObjectMetaPatchArgs(annotations=annotations) if annotations else None,
        spec=k8s.core.v1.PodSpecPatchArgs(containers=containers) if containers else None,
    )


def deployment_spec(p: model.Patch) -> k8s.apps.v1.DeploymentSpecPatchArgs:
    """Only the fields the program owns; anything left out stays the team's."""
    strategy = None
    if p.max_unavailable_zero:
        rolling = k8s.apps.v1.RollingUpdateDeploymentPatchArgs(max_unavailable=0)
        strategy = k8s.apps.v1.DeploymentStrategyPatchArgs(rolling_update=rolling)
    return k8s.apps.v1.DeploymentSpecPatchArgs(template=_template(p), strategy=strategy)


def stateful_set_spec(p: model.Patch) -> k8s.apps.v1.StatefulSetSpecPatchArgs:
    return k8s.apps.v1.StatefulSetSpecPatchArgs(template=_template(p))


class _Opaque:
    """A value Output.all passes through whole: it deep-unwraps dicts and lists, which for a live
    object (its spec, its managedFields) costs more than all the rest of the program."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _shallow_all(*outputs: pulumi.Output[Any]) -> pulumi.Output[_Opaque]:
    """Output.all of `outputs`, their values kept whole (`.value`: the list of them)."""
    wrapped = [o.apply(_Opaque) for o in outputs]
    return pulumi.Output.all(*wrapped).apply(lambda values: _Opaque([v.value for v in values]))


def _live_of(kind: str, wmeta: Any, wspec: Any, smeta: Any, sspec: Any, nmeta: Any) -> model.Live | None:
    workload = read_workload(kind, wmeta, wspec)
    if workload is None:
        return None
    return model.Live(workload, read_service(smeta, sspec), read_namespace(nmeta))


@dataclass
class AdoptedWorkloadsArgs:
    fleet: Fleet
    target: Mapping[str, Phase]  # the phases this step selects
    direct: Sequence[str] = ()  # CIDRs meshed pods reach without their sidecar (never_through_the_mesh)


@dataclass
class _Reads:
    service: Service
    workload: k8s.apps.v1.Deployment | k8s.apps.v1.StatefulSet
    k8s_service: k8s.core.v1.Service
    namespace: k8s.core.v1.Namespace


class AdoptedWorkloads(pulumi.ComponentResource):
    """The live reads of every adopted service and (`patches`) their patches.

    The Kubernetes provider comes through `opts` (`providers`), and every child inherits it.
    """

    namespaces: dict[str, k8s.core.v1.Namespace]  # the adopted services' namespaces, read (never created)
    lives: pulumi.Output[dict[str, model.Live]]  # by service; a service missing was not read (offline)
    patches_by_service: dict[str, k8s.apps.v1.DeploymentPatch | k8s.apps.v1.StatefulSetPatch]
    catalog_sync: dict[str, k8s.core.v1.ServicePatch]  # by service: its Service's one annotation

    def __init__(self, name: str, args: AdoptedWorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The type token is state identity (in every URN below it), not a module path: it never changes.
        super().__init__("consul-mesh-migration:adoption:AdoptedWorkloads", name, None, opts)
        self._name, self._args = name, args
        self._reads = self._read()
        self.namespaces = {r.service.namespace: r.namespace for r in self._reads.values()}
        self.lives = self._live()
        self.patches_by_service = {}
        self.catalog_sync = {}

    def _read(self) -> dict[str, _Reads]:
        """What runs: read at preview and at up (a `get` changes nothing; a missing object fails the
        read with "resource 'ns/name' does not exist", before any migration object)."""
        out: dict[str, _Reads] = {}
        namespaces: dict[str, k8s.core.v1.Namespace] = {}
        child = pulumi.ResourceOptions(parent=self)
        # A pod template holds the team's env values: the read keeps them as secrets in the state.
        secret_spec = pulumi.ResourceOptions(parent=self, additional_secret_outputs=["spec"])
        for s in self._args.fleet.services:
            if s.workload is None:
                continue
            ns = s.namespace
            if ns not in namespaces:
                namespaces[ns] = k8s.core.v1.Namespace.get(f"{self._name}-namespace-{ns}", ns, opts=child)
            kind = k8s.apps.v1.Deployment if s.workload.kind == "Deployment" else k8s.apps.v1.StatefulSet
            out[s.name] = _Reads(
                s,
                kind.get(f"{self._name}-{s.name}-workload", f"{ns}/{s.workload.name}", opts=secret_spec),
                k8s.core.v1.Service.get(f"{self._name}-{s.name}-service", f"{ns}/{s.name}", opts=child),
                namespaces[ns],
            )
        return out

    def _live(self) -> pulumi.Output[dict[str, model.Live]]:
        """Each adopted service's live objects as the model's data (absent when nothing was read)."""
        self._live_of: dict[str, pulumi.Output[model.Live | None]] = {}
        for name, r in self._reads.items():
            kind = r.service.workload.kind if r.service.workload else "Deployment"
            parts = _shallow_all(
                r.workload.metadata, r.workload.spec, r.k8s_service.metadata, r.k8s_service.spec, r.namespace.metadata
            )
            self._live_of[name] = parts.apply(lambda o, kind=kind: _live_of(kind, *o.value))
        names = list(self._live_of)
        return pulumi.Output.all(*self._live_of.values()).apply(
            lambda lives: {n: live for n, live in zip(names, lives, strict=True) if live is not None}
        )

    def patches(self, config: ConfigEntries, gate: Gate) -> list[pulumi.CustomResource]:
        """One patch per adopted workload, once `gate` (the phase guard and the live verdict) passed and
        the config entries its pods need are in Consul (its ServiceDefaults, the intentions of its
        upstreams and their ServiceDefaults, as a demo mesh version waits for them)."""
        args = self._args
        for name, r in self._reads.items():
            s = r.service
            assert s.workload is not None
            phase = args.target[name]
            metadata = k8s.meta.v1.ObjectMetaPatchArgs(
                name=s.workload.name,
                namespace=s.namespace,
                annotations={PATCH_FIELD_MANAGER: model.FIELD_MANAGER},
            )
            needs = config.needed_by_service(s)
            opts = pulumi.ResourceOptions(parent=self, depends_on=gate.verdict(r.workload, *needs))
            # Only the program's own fields (no value of the team's): shown in previews, not as secrets.
            # From this service's own reads (not every service's): hundreds of services stay quick.
            own = self._live_of[name]
            body = pulumi.Output.unsecret(own.apply(lambda live, s=s, phase=phase: self._patch(s, phase, live)))
            resource = f"{self._name}-{name}"
            if s.workload.kind == "Deployment":
                self.patches_by_service[name] = k8s.apps.v1.DeploymentPatch(
                    resource, metadata=metadata, spec=body.apply(deployment_spec), opts=opts
                )
            else:
                self.patches_by_service[name] = k8s.apps.v1.StatefulSetPatch(
                    resource, metadata=metadata, spec=body.apply(stateful_set_spec), opts=opts
                )
            sync = {SERVICE_SYNC: "true" if catalog_synced(s, phase) else "false"}
            self.catalog_sync[name] = k8s.core.v1.ServicePatch(
                f"{resource}-catalog-sync",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                    name=s.name,  # the Service read as the service's (`_read`)
                    namespace=s.namespace,
                    annotations={PATCH_FIELD_MANAGER: model.FIELD_MANAGER, **sync},
                ),
                opts=opts,
            )
        self.register_outputs({})
        return [*self.patches_by_service.values(), *self.catalog_sync.values()]

    def _patch(self, s: Service, phase: Phase, live: model.Live | None) -> model.Patch:
        if live is None:
            # Offline: what the phase asks of the pod template, without what only the live object tells.
            return model.Patch(inject=model.injected(s, phase))
        return model.patch(self._args.fleet, s, phase, live, self._args.direct)

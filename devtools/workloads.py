"""A team's objects as the Kubernetes API server returns them, for the offline runner's `cluster`.

A team applies a manifest (its Deployment or StatefulSet, Service, Namespace); the API server stores
it with its defaults (apps/v1 `SetDefaults_Deployment`, core/v1 `SetDefaults_PodSpec`,
`SetDefaults_Container`, ...: the values below are those of Kubernetes 1.35) and records, per field
manager, the fields that manager set (`metadata.managedFields`, FieldsV1: `f:<field>` for a field,
`k:<key fields as JSON>` for an item of a list map, `.` for the item itself, `{}` for a leaf;
`sigs.k8s.io/structured-merge-diff` fieldpath serialization). Defaulted fields belong to no manager.
List maps and their keys come from the API's schema (`x-kubernetes-list-map-keys`, in the
kubernetes-validate schemas of the dev lock): containers and env by `name`, container ports by
`containerPort` and `protocol`, Service ports by `port` and `protocol`.

Every object built here is held to the strict Kubernetes 1.35 schema in the tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from program.offline import live_key

# The list maps a team's objects hold, by the path of the list (`[]` stands for "each item").
LIST_MAP_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("spec", "template", "spec", "containers"): ("name",),
    ("spec", "template", "spec", "initContainers"): ("name",),
    ("spec", "template", "spec", "containers", "[]", "env"): ("name",),
    ("spec", "template", "spec", "containers", "[]", "ports"): ("containerPort", "protocol"),
    ("spec", "template", "spec", "volumes"): ("name",),
    ("spec", "template", "spec", "containers", "[]", "volumeMounts"): ("mountPath",),
    ("spec", "ports"): ("port", "protocol"),
}


def _string_map(key: str, value: Mapping[str, Any]) -> bool:
    """Labels, annotations and a Service's selector: each key is a field of its own."""
    if key in ("labels", "annotations", "matchLabels", "nodeSelector"):
        return True
    return key == "selector" and not ({"matchLabels", "matchExpressions"} & set(value))


def fields_v1(obj: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """The FieldsV1 set of every field in `obj` (what a manager owns after setting exactly these)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        here = (*path, key)
        if isinstance(value, Mapping) and _string_map(key, value):
            out[f"f:{key}"] = {f"f:{k}": {} for k in value}
        elif isinstance(value, Mapping):
            out[f"f:{key}"] = fields_v1(value, here)
        elif isinstance(value, list) and here in LIST_MAP_KEYS:
            items: dict[str, Any] = {}
            for item in value:
                # A key the manifest leaves out is keyed by its default (a port's protocol: TCP).
                ident = {k: item.get(k, "TCP" if k == "protocol" else None) for k in LIST_MAP_KEYS[here]}
                key_text = "k:" + json.dumps(ident, separators=(",", ":"), sort_keys=True)
                items[key_text] = {".": {}, **fields_v1(item, (*here, "[]"))}
            out[f"f:{key}"] = items
        else:  # a scalar or an atomic list
            out[f"f:{key}"] = {}
    return out


def _managed(manager: str, operation: str, applied: Mapping[str, Any], api_version: str) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": "2026-11-30T09:12:44Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(applied),
    }


def _container_defaults(c: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(c))
    out.setdefault("imagePullPolicy", "IfNotPresent")
    out.setdefault("terminationMessagePath", "/dev/termination-log")
    out.setdefault("terminationMessagePolicy", "File")
    out.setdefault("resources", {})
    for port in out.get("ports", []):
        port.setdefault("protocol", "TCP")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = out.get(kind)
        if probe is not None:
            for k, v in (
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ):
                probe.setdefault(k, v)
            if "httpGet" in probe:
                probe["httpGet"].setdefault("scheme", "HTTP")
    return out


def _pod_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    out["containers"] = [_container_defaults(c) for c in out.get("containers", [])]
    out.setdefault("restartPolicy", "Always")
    out.setdefault("terminationGracePeriodSeconds", 30)
    out.setdefault("dnsPolicy", "ClusterFirst")
    out.setdefault("securityContext", {})
    out.setdefault("schedulerName", "default-scheduler")
    if "serviceAccountName" in out:
        out.setdefault("serviceAccount", out["serviceAccountName"])  # the deprecated alias the server fills
    return out


def _stored(kind: str, api_version: str, manifest: Mapping[str, Any], manager: str, operation: str) -> dict[str, Any]:
    meta = dict(manifest["metadata"])
    stored: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            **meta,
            "uid": f"3f2b8c1e-{abs(hash((kind, meta['name']))) % 10**4:04d}-4a52-9d0e-6c1f2b7a9e01",
            "resourceVersion": "48213",
            "generation": 1,
            "creationTimestamp": "2026-11-30T09:12:44Z",
            "managedFields": [
                _managed(manager, operation, {k: v for k, v in manifest.items() if k != "status"}, api_version)
            ],
        },
    }
    return stored


def deployment(
    name: str,
    namespace: str,
    containers: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str] | None = None,
    replicas: int = 2,
    service_account: str | None = None,
    template_annotations: Mapping[str, str] | None = None,
    strategy: Mapping[str, Any] | None = None,
    pod: Mapping[str, Any] | None = None,
    manager: str = "helm",
    operation: str = "Update",
) -> dict[str, Any]:
    """A Deployment as `kubectl get -o json` shows it after the team's tool created it."""
    labels = dict(labels or {"app": name})
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": {"containers": [dict(c) for c in containers]}}
    if template_annotations:
        template["metadata"]["annotations"] = dict(template_annotations)
    if service_account:
        template["spec"]["serviceAccountName"] = service_account
    template["spec"].update(pod or {})
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}
    if strategy is not None:
        spec["strategy"] = dict(strategy)
    manifest = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}
    out = _stored("Deployment", "apps/v1", manifest, manager, operation)
    stored_spec = copy.deepcopy(spec)
    stored_spec["template"]["spec"] = _pod_defaults(stored_spec["template"]["spec"])
    stored_spec.setdefault("strategy", {})
    stored_spec["strategy"].setdefault("type", "RollingUpdate")
    if stored_spec["strategy"]["type"] == "RollingUpdate":
        stored_spec["strategy"].setdefault("rollingUpdate", {})
        stored_spec["strategy"]["rollingUpdate"].setdefault("maxUnavailable", "25%")
        stored_spec["strategy"]["rollingUpdate"].setdefault("maxSurge", "25%")
    stored_spec.setdefault("revisionHistoryLimit", 10)
    stored_spec.setdefault("progressDeadlineSeconds", 600)
    out["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    out["spec"] = stored_spec
    out["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    return out


def stateful_set(
    name: str,
    namespace: str,
    containers: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str] | None = None,
    replicas: int = 3,
    service_account: str | None = None,
    update_strategy: Mapping[str, Any] | None = None,
    manager: str = "helm",
) -> dict[str, Any]:
    labels = dict(labels or {"app": name})
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": {"containers": [dict(c) for c in containers]}}
    if service_account:
        template["spec"]["serviceAccountName"] = service_account
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": labels},
        "template": template,
    }
    if update_strategy is not None:
        spec["updateStrategy"] = dict(update_strategy)
    manifest = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}
    out = _stored("StatefulSet", "apps/v1", manifest, manager, "Update")
    stored_spec = copy.deepcopy(spec)
    stored_spec["template"]["spec"] = _pod_defaults(stored_spec["template"]["spec"])
    stored_spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    stored_spec.setdefault("podManagementPolicy", "OrderedReady")
    stored_spec.setdefault("revisionHistoryLimit", 10)
    stored_spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    out["spec"] = stored_spec
    out["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": replicas,
        "currentReplicas": replicas,
        "updatedReplicas": replicas,
        "currentRevision": f"{name}-5d8c7b9f4",
        "updateRevision": f"{name}-5d8c7b9f4",
        "availableReplicas": replicas,
    }
    return out


def service(
    name: str,
    namespace: str,
    ports: Iterable[Mapping[str, Any]],
    *,
    selector: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    manager: str = "helm",
) -> dict[str, Any]:
    spec = {"selector": dict(selector or {"app": name}), "ports": [dict(p) for p in ports]}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    out = _stored("Service", "v1", {"metadata": metadata, "spec": spec}, manager, "Update")
    stored = copy.deepcopy(spec)
    for p in stored["ports"]:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p["port"])
    stored.update(
        type="ClusterIP",
        clusterIP="172.20.41.17",
        clusterIPs=["172.20.41.17"],
        sessionAffinity="None",
        ipFamilies=["IPv4"],
        ipFamilyPolicy="SingleStack",
        internalTrafficPolicy="Cluster",
    )
    out["spec"] = stored
    out["status"] = {"loadBalancer": {}}
    return out


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Namespace; the API server adds `kubernetes.io/metadata.name` (NamespaceDefaultLabelName)."""
    metadata = {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}
    out = _stored("Namespace", "v1", {"metadata": metadata}, "kubectl-create", "Update")
    out["spec"] = {"finalizers": ["kubernetes"]}
    out["status"] = {"phase": "Active"}
    return out


def cluster(*objects: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`run_program(cluster=...)` for these objects, keyed as `get` reads them."""
    types = {
        "Deployment": "kubernetes:apps/v1:Deployment",
        "StatefulSet": "kubernetes:apps/v1:StatefulSet",
        "Service": "kubernetes:core/v1:Service",
        "Namespace": "kubernetes:core/v1:Namespace",
    }
    out = {}
    for obj in objects:
        meta = obj["metadata"]
        ident = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        out[live_key(types[obj["kind"]], ident)] = dict(obj)
    return out


def applied(live: Mapping[str, Any], patch: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """`live` with `patch` merged in as a server-side apply merges it: maps field by field, list maps
    item by item on their keys, anything else replaced (what the object looks like after the patch)."""
    out = copy.deepcopy(dict(live))
    for key, value in patch.items():
        here = (*path, key)
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = applied(current, value, here)
        elif isinstance(value, list) and here in LIST_MAP_KEYS and isinstance(current, list):
            keys = LIST_MAP_KEYS[here]
            items = [dict(i) for i in current]
            for item in value:
                ident = {k: item.get(k, "TCP" if k == "protocol" else None) for k in keys}
                match = next(
                    (i for i in items if {k: i.get(k, "TCP" if k == "protocol" else None) for k in keys} == ident), None
                )
                if match is None:
                    items.append(dict(item))
                else:
                    items[items.index(match)] = applied(match, item, (*here, "[]"))
            out[key] = items
        else:
            out[key] = copy.deepcopy(value)
    return out


def leaf_paths(obj: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of an object by a readable path (`spec.template.spec.containers[name=app].env[name=X].value`)."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(leaf_paths(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(i, Mapping) and "name" in i for i in obj):
        for i in obj:
            out.update(leaf_paths(i, f"{path}[name={i['name']}]"))
    else:
        out[path] = obj
    return out

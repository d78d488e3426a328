"""A team's own workloads through the real program under mocks: read live, refused before any migration
object changes, and changed only through one server-side-apply patch each (components/adoption.py).

The live objects are built as the API server stores what a team applied (devtools/cluster.py: its
defaults, and the team's tool as the field manager of what it set), and held to the strict Kubernetes
1.35 schema. Each patch is merged into its live object the way server-side apply merges (maps by key,
list maps by their keys) and the result is held to the schema too: the patch can only add the fields
asserted here.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from devtools import workloads as live
from migration.outside import never_through_the_mesh
from migration.phases import PHASE_NAMES
from program.config import parse_config, project_keys
from program.offline import Run, run_program, stack_config

from .test_kubernetes_validity import KUBERNETES_VERSION, _plain

PATCH = "kubernetes:apps/v1:DeploymentPatch"
STS_PATCH = "kubernetes:apps/v1:StatefulSetPatch"
CONSUL = "kubernetes:consul.hashicorp.com/v1alpha1"
FIELD_MANAGER = {"pulumi.com/patchFieldManager": "consul-mesh-migration"}
# What every meshed pod reaches without its sidecar once the Mesh closes, on the local stack's Service
# range (migration/outside.py never_through_the_mesh): the Kubernetes API and the node's link-local.
LOCAL_SERVICE_CIDR = str(parse_config(project_keys(stack_config("local"))).cluster.service_cidr)
KEPT_DIRECT = {
    "consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs": ",".join(
        never_through_the_mesh(LOCAL_SERVICE_CIDR)
    )
}
INJECTION = {
    **KEPT_DIRECT,
    "consul.hashicorp.com/connect-inject": "true",
    "consul.hashicorp.com/transparent-proxy": "true",
    "consul.hashicorp.com/transparent-proxy-overwrite-probes": "true",
    "consul.hashicorp.com/connect-service-port": "8080",
}


def orders_container(**more: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": "registry.example.com/shop/orders:4.2.0",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9102}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        **more,
    }


def web_container(**more: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "image": "registry.example.com/shop/web:1.9.0",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        **more,
    }


def team_cluster() -> dict[str, dict[str, Any]]:
    """The shop team's namespace: orders outside the mesh, web already injected by its own chart, stock a
    StatefulSet; each with a Service named like it and a ServiceAccount of that name."""
    return live.cluster(
        live.namespace("shop"),
        live.deployment("orders", "shop", [orders_container()], replicas=4, service_account="orders"),
        live.service("orders", "shop", [{"name": "http", "port": 80, "targetPort": "http"}]),
        live.deployment(
            "web",
            "shop",
            [web_container()],
            service_account="web",
            template_annotations={"consul.hashicorp.com/connect-inject": "true"},
        ),
        live.service("web", "shop", [{"name": "http", "port": 80, "targetPort": 8080}]),
        live.stateful_set(
            "stock",
            "shop",
            [{"name": "db", "image": "registry.example.com/shop/stock:2.1.0", "ports": [{"containerPort": 5432}]}],
            service_account="stock",
        ),
        live.service("stock", "shop", [{"port": 5432}]),
    )


def team(**phases: str) -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = [
        {"name": "stock", "namespace": "shop", "workload": {"kind": "StatefulSet", "name": "stock"}, "port": 5432,
         "protocol": "tcp", "migrates": True},
        {"name": "orders", "namespace": "shop", "workload": {"kind": "Deployment", "name": "orders"}, "port": 80,
         "protocol": "grpc", "migrates": True, "upstreams": ["stock"]},
        {"name": "web", "namespace": "shop", "workload": {"kind": "Deployment", "name": "web"}, "port": 80,
         "upstreams": [{"name": "orders", "env": "ORDERS_ADDR", "value": "http://{host}:{port}"}]},
    ]  # fmt: skip
    return [{**s, **({"phase": phases[s["name"]]} if s["name"] in phases else {})} for s in services]


def config(phase: str, **phases: str) -> dict[str, Any]:
    return {"phase": phase, "services": team(**phases), "verify": {"enabled": False}}


_runs: dict[str, Run] = {}


def render(phase: str, objects: dict[str, dict[str, Any]] | None = None, deployed: str | None = None) -> Run:
    key = f"{phase}/{deployed}/{objects is None}"
    if objects is not None or key not in _runs:
        run = run_program(
            config(phase),
            stack="local",
            cluster=team_cluster() if objects is None else objects,
            deployed={"phase": deployed} if deployed else None,
        )
        if objects is not None:
            return run
        _runs[key] = run
    return _runs[key]


def ok(run: Run) -> Run:
    assert run.error is None, run.error
    return run


def body(run: Run, name: str, type_: str = PATCH) -> dict[str, Any]:
    return _plain(run.one(type_, f"adoption-{name}").inputs)


# --- what the program creates and what it changes -------------------------------------------------


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_an_adopted_fleet_has_no_workload_service_account_or_namespace_of_its_own(phase):
    run = ok(render(phase))
    ours = {(r.kind, r.k8s_namespace, r.k8s_name) for r in run.resources if r.custom}
    for kind in ("Deployment", "StatefulSet", "Service", "ServiceAccount"):
        assert not [o for o in ours if o[0] == kind and o[1] == "shop"], kind
    assert ("Namespace", None, "shop") not in ours
    patches = {(r.kind, r.k8s_name) for r in run.resources if r.kind in ("DeploymentPatch", "StatefulSetPatch")}
    assert patches == {("DeploymentPatch", "orders"), ("DeploymentPatch", "web"), ("StatefulSetPatch", "stock")}
    # What runs is read, in every phase (components/adoption.py `_read`).
    assert {(t.rsplit(":", 1)[-1], i) for t, i in run.reads} >= {
        ("Deployment", "shop/orders"),
        ("Service", "shop/orders"),
        ("StatefulSet", "shop/stock"),
        ("Namespace", "shop"),
    }


def test_at_discovery_the_patches_change_no_pod_template():
    """Adopting a workload rolls nothing: only the field manager's own annotation on the object, and
    maxUnavailable 0 where nobody else sets it (the team's chart leaves the default 25%, which drops 1
    of orders' 4 pods in a roll)."""
    run = ok(render("discovery"))
    assert body(run, "orders")["spec"] == {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}
    assert body(run, "orders")["metadata"] == {"name": "orders", "namespace": "shop", "annotations": FIELD_MANAGER}
    assert body(run, "web")["spec"] == {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}
    assert body(run, "stock", STS_PATCH)["spec"] == {}


@pytest.mark.parametrize("phase", ["permissive", "strict", "hardened"])
def test_from_permissive_a_migrating_workload_is_injected_by_its_own_rolling_update(phase):
    """The port Consul registers is the Service's target port (orders' first container port is
    `http`, but say so: CE registers one port), and the app keeps serving while Consul and DNS drop a
    terminating pod (migration/drain.py)."""
    spec = body(ok(render(phase)), "orders")["spec"]
    assert spec == {
        "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
        "template": {
            "metadata": {"annotations": INJECTION},
            "spec": {"containers": [{"name": "app", "lifecycle": {"preStop": {"sleep": {"seconds": 15}}}}]},
        },
    }


def test_a_stateful_set_gets_the_same_annotations_and_no_rollout_strategy():
    spec = body(ok(render("permissive")), "stock", STS_PATCH)["spec"]
    assert spec["template"]["metadata"]["annotations"] == {
        **INJECTION,
        "consul.hashicorp.com/connect-service-port": "5432",
    }
    assert set(spec) == {"template"}


def test_at_virtual_the_program_sets_the_variable_the_team_named_and_nothing_before():
    before = body(ok(render("strict")), "web")["spec"]
    assert "template" not in before  # web is injected by its own chart: the program leaves its template
    after = body(ok(render("virtual")), "web")["spec"]
    assert after["template"] == {
        # Before any `up` can close the Mesh, web's own pods keep the API and link-local out of it.
        "metadata": {"annotations": KEPT_DIRECT},
        "spec": {
            "containers": [
                {"name": "web", "env": [{"name": "ORDERS_ADDR", "value": "http://orders.virtual.consul:80"}]}
            ]
        },
    }


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_each_patch_merged_into_its_workload_is_a_valid_object_changed_only_in_the_migrations_fields(phase):
    run = ok(render(phase))
    objects = team_cluster()
    allowed = (
        "metadata.annotations.pulumi.com/patchFieldManager",
        "spec.strategy.rollingUpdate.maxUnavailable",
        "spec.template.metadata.annotations.consul.hashicorp.com/",
        "spec.template.spec.containers[name=app].lifecycle.preStop.sleep.seconds",
        "spec.template.spec.containers[name=db].lifecycle.preStop.sleep.seconds",
        "spec.template.spec.containers[name=web].env[name=ORDERS_ADDR].",
    )
    for name, kind in (("orders", "Deployment"), ("web", "Deployment"), ("stock", "StatefulSet")):
        before = objects[f"kubernetes:apps/v1:{kind}|shop/{name}"]
        patch = body(run, name, PATCH if kind == "Deployment" else STS_PATCH)
        after = live.applied(before, {k: v for k, v in patch.items() if k in ("metadata", "spec")})
        kubernetes_validate.validate(after, KUBERNETES_VERSION, strict=True)
        was, now = live.leaf_paths(before), live.leaf_paths(after)
        changed = sorted(p for p in set(was) | set(now) if was.get(p) != now.get(p))
        assert all(p.startswith(allowed) for p in changed), changed


@pytest.mark.parametrize("phase", PHASE_NAMES)
def test_catalog_sync_leaves_a_service_once_all_its_pods_are_in_the_mesh_by_one_annotation_on_its_service(phase):
    """consul-k8s v2.0.3 catalog sync registers every endpoint of a synced Service, mesh pods too
    (control-plane/catalog/to-consul/resource.go registerServiceInstance), which Consul's docs say not to
    do: the rule of migration/workloads.py catalog_synced, as for the demo's Services. web is injected by
    its own chart (never synced); orders and stock from strict on, "true" before: the chart syncs only a
    Service that says so (syncCatalog.default false), which keeps the team's other Services out."""
    run = ok(render(phase))
    objects = team_cluster()
    unsynced = {"web"} | ({"orders", "stock"} if PHASE_NAMES.index(phase) >= PHASE_NAMES.index("strict") else set())
    for name in ("orders", "web", "stock"):
        patch = body(run, f"{name}-catalog-sync", "kubernetes:core/v1:ServicePatch")
        sync = {"consul.hashicorp.com/service-sync": "false" if name in unsynced else "true"}
        assert patch["metadata"] == {"name": name, "namespace": "shop", "annotations": {**FIELD_MANAGER, **sync}}
        assert set(patch) == {"apiVersion", "kind", "metadata"}  # no spec: nothing but the annotation
        before = objects[f"kubernetes:core/v1:Service|shop/{name}"]
        after = live.applied(before, {"metadata": patch["metadata"]})
        kubernetes_validate.validate(after, KUBERNETES_VERSION, strict=True)
        was, now = live.leaf_paths(before), live.leaf_paths(after)
        assert {p for p in set(was) | set(now) if was.get(p) != now.get(p)} <= {
            "metadata.annotations.pulumi.com/patchFieldManager",
            "metadata.annotations.consul.hashicorp.com/service-sync",
        }


def test_the_team_objects_are_what_the_api_server_would_hold():
    for obj in team_cluster().values():
        kubernetes_validate.validate(_plain(obj), KUBERNETES_VERSION, strict=True)


def test_each_service_declares_its_own_protocol_and_proxy_defaults_none():
    """ProxyDefaults `global` applies to every service without ServiceDefaults: a team's other services,
    a VM's. With a team's workload in the fleet it declares no protocol (migration/entries.py)."""
    run = ok(render("permissive"))
    protocols = {r.k8s_name: r.inputs["spec"]["protocol"] for r in run.of_type(f"{CONSUL}:ServiceDefaults")}
    assert protocols == {"stock": "tcp", "orders": "grpc", "web": "http"}
    assert "config" not in run.one(f"{CONSUL}:ProxyDefaults").inputs["spec"]


def test_the_patch_keeps_its_urn_in_every_phase():
    """One patch per workload, never replaced: a replaced patch would be deleted (its fields given back
    by pulumi-kubernetes' Relinquish, sharing the same field manager) after its successor applied."""
    urns = {ok(render(p)).one(PATCH, "adoption-orders").urn for p in PHASE_NAMES}
    assert urns == {
        "urn:pulumi:local::consul-mesh-migration::consul-mesh-migration:adoption:AdoptedWorkloads"
        "$kubernetes:apps/v1:DeploymentPatch::adoption-orders"
    }


def test_without_a_cluster_to_read_the_plan_shows_what_config_alone_tells():
    """`make plan` reads no cluster: the patch then holds the injection annotations of the phase and
    nothing only the live object can tell (the port, the container, the rollout)."""
    run = ok(render("permissive", objects={}))
    annotations = body(run, "orders")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        k: v for k, v in INJECTION.items() if not k.endswith(("connect-service-port", "exclude-outbound-cidrs"))
    }
    assert set(body(run, "orders")["spec"]) == {"template"}


# --- what is refused, before any migration object changes -----------------------------------------


def broken_cluster() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One adopted service per problem (config, live objects), all in one run: every line is printed."""
    services: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = [
        live.namespace("shop"),
        live.namespace("ops", {"openshift.io/cluster-monitoring": "true"}),
    ]

    def add(
        name: str,
        *,
        ns: str = "shop",
        migrates: bool = True,
        port: int = 80,
        kind: str = "Deployment",
        workload: dict[str, Any] | None = None,
        svc: dict[str, Any] | None = None,
        **cfg: Any,
    ) -> None:
        services.append(
            {
                "name": name,
                "namespace": ns,
                "workload": {"kind": kind, "name": name},
                "port": port,
                "migrates": migrates,
                **cfg,
            }
        )
        objects.append(workload or live.deployment(name, ns, [orders_container()], service_account=name))
        objects.append(svc or live.service(name, ns, [{"port": 80, "targetPort": "http"}]))

    add(
        "unselected",
        svc=live.service("unselected", "shop", [{"port": 80, "targetPort": "http"}], selector={"app": "other"}),
    )
    add(
        "twoports",
        svc=live.service(
            "twoports", "shop", [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9102}]
        ),
    )
    add("notarget", svc=live.service("notarget", "shop", [{"port": 80, "targetPort": 8081}]))
    add("account", workload=live.deployment("account", "shop", [orders_container()], service_account="default"))
    add(
        "hostnet",
        workload=live.deployment(
            "hostnet", "shop", [orders_container()], service_account="hostnet", pod={"hostNetwork": True}
        ),
    )
    add(
        "sidecarport",
        workload=live.deployment(
            "sidecarport",
            "shop",
            [
                orders_container(
                    ports=[{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 19000}]
                )
            ],
            service_account="sidecarport",
        ),
    )
    add(
        "optout",
        workload=live.deployment(
            "optout",
            "shop",
            [orders_container()],
            service_account="optout",
            template_annotations={"consul.hashicorp.com/connect-inject": "false"},
        ),
    )
    add(
        "skipped",
        ns="ops",
        workload=live.deployment("skipped", "ops", [orders_container()], service_account="skipped"),
        svc=live.service("skipped", "ops", [{"port": 80, "targetPort": "http"}]),
    )
    add(
        "grpcprobe",
        workload=live.deployment(
            "grpcprobe",
            "shop",
            [orders_container(readinessProbe={"grpc": {"port": 8080}})],
            service_account="grpcprobe",
        ),
    )
    add(
        "recreate",
        workload=live.deployment(
            "recreate", "shop", [orders_container()], service_account="recreate", strategy={"type": "Recreate"}
        ),
    )
    add(
        "lossy",
        workload=live.deployment(
            "lossy",
            "shop",
            [orders_container()],
            service_account="lossy",
            replicas=4,
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        ),
    )
    add(
        "ondelete",
        kind="StatefulSet",
        workload=live.stateful_set(
            "ondelete", "shop", [orders_container()], service_account="ondelete", update_strategy={"type": "OnDelete"}
        ),
    )
    add("notmeshed", migrates=False)
    add(
        "ownexclude",
        workload=live.deployment(
            "ownexclude",
            "shop",
            [orders_container()],
            service_account="ownexclude",
            template_annotations={"consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs": "10.20.0.0/16"},
        ),
    )
    objects.append(
        live.deployment(
            "ownvar",
            "shop",
            [web_container(env=[{"name": "ORDERS_ADDR", "value": "orders.service.consul:8080"}])],
            service_account="ownvar",
            template_annotations={"consul.hashicorp.com/connect-inject": "true"},
        )
    )
    objects.append(live.service("ownvar", "shop", [{"port": 80, "targetPort": 8080}]))
    services.append(
        {
            "name": "ownvar",
            "namespace": "shop",
            "workload": {"kind": "Deployment", "name": "ownvar"},
            "port": 80,
            "phase": "virtual",
            "upstreams": [{"name": "unselected", "env": "ORDERS_ADDR"}],
        }
    )
    # The gateway needs a service in the mesh from the start.
    services.append(
        {"name": "front", "namespace": "shop", "workload": {"kind": "Deployment", "name": "front"}, "port": 80}
    )
    objects.append(
        live.deployment(
            "front",
            "shop",
            [web_container()],
            service_account="front",
            template_annotations={"consul.hashicorp.com/connect-inject": "true"},
        )
    )
    objects.append(live.service("front", "shop", [{"port": 80, "targetPort": 8080}]))
    return services, live.cluster(*objects)  # fmt: skip


REFUSED = {
    "unselected": "Service shop/unselected does not select the pods of Deployment shop/unselected (selector app=other)",
    "twoports": "Service shop/twoports has 2 ports (80, 9102); Consul CE registers one port per service",
    "notarget": "Service shop/notarget port 80 does not target a port of Deployment shop/notarget's containers",
    "account": "runs as ServiceAccount 'default'; with ACLs the sidecar logs in to Consul as its ServiceAccount",
    "hostnet": "Deployment shop/hostnet uses hostNetwork",
    "sidecarport": "container 'app' listens on 19000, taken on a meshed pod by Envoy's admin listener",
    "optout": "already sets connect-inject 'false' on its pods (managed by helm)",
    "skipped": "namespace ops is labelled so that the chart's injector skips it",
    "grpcprobe": "has a grpc readiness probe on its service port 8080",
    "recreate": "rolls with strategy Recreate",
    "lossy": "rolls with maxUnavailable 1 (1 of 4 pods), set by helm: the injection roll would lose capacity",
    "ondelete": "StatefulSet shop/ondelete updates OnDelete",
    "notmeshed": "declared in the mesh from the start (migrates: false) but its pods are not injected",
    "ownexclude": "sets transparent-proxy-exclude-outbound-cidrs itself (managed by helm) without 10.96.0.1/32,",
    "ownvar": "sets ORDERS_ADDR itself, managed by helm: the program never takes a field its owner manages",
}


def test_whatever_keeps_a_workload_out_of_the_mesh_is_refused_one_line_each_before_any_migration_object():
    services, objects = broken_cluster()
    cfg = {"phase": "permissive", "services": services, "gateway": {"service": "front"}, "verify": {"enabled": False}}
    run = run_program(cfg, stack="local", cluster=objects)
    assert run.error is not None
    lines = [line.removeprefix("ConfigError: ") for line in run.error.splitlines()]
    lines = [line for line in lines if line.startswith("config consul-mesh-migration:services[")]
    for name, text in REFUSED.items():
        i = next(n for n, s in enumerate(services) if s["name"] == name)
        mine = [line for line in lines if line.startswith(f"config consul-mesh-migration:services[{i}].workload: ")]
        assert any(text in line for line in mine), (name, mine)
    assert len(lines) == len(REFUSED), lines
    # Nothing of the migration is registered: no entry, no patch.
    assert not [r for r in run.resources if "mesh_config:MeshConfig$" in r.urn]
    assert not [r for r in run.resources if r.kind in ("DeploymentPatch", "StatefulSetPatch")]


def test_a_field_manager_that_sets_the_same_value_shares_it_and_is_not_refused():
    """web's own chart sets connect-inject "true" and web is declared in the mesh from the start: fine."""
    ok(render("virtual"))


@pytest.mark.parametrize(
    ("value", "phase", "refused"),
    [("false", "discovery", True), ("true", "strict", True), ("true", "discovery", False), ("false", "strict", False)],
)
def test_a_service_sync_of_the_teams_own_is_refused_where_it_differs_from_the_phases(value, phase, refused):
    """Server-side apply refuses the program's patch of a field another manager holds with another
    value (a conflict; the program never forces): said first, in one line. The same value is shared."""
    objects = team_cluster()
    key = "kubernetes:core/v1:Service|shop/orders"
    objects[key] = live.service(
        "orders",
        "shop",
        [{"name": "http", "port": 80, "targetPort": "http"}],
        annotations={"consul.hashicorp.com/service-sync": value},
    )
    deployed = {"discovery": None, "strict": "permissive"}[phase]
    run = render(phase, objects=objects, deployed=deployed)
    if not refused:
        ok(run)
        return
    assert run.error is not None
    (line,) = [x for x in run.error.splitlines() if "service-sync" in x]
    assert line.endswith(
        f"Service shop/orders sets service-sync {value!r} itself (managed by helm); the program sets it phase by "
        'phase ("true" while the service has pods outside the mesh, then "false"): drop it from the manifest'
    )


def test_a_missing_preStop_grace_leaves_the_drain_to_the_team():
    """With terminationGracePeriodSeconds 10 the kubelet would kill the app inside the program's 15 s
    sleep: the program adds no preStop then (the owner's shutdown wins)."""
    objects = team_cluster()
    key = "kubernetes:apps/v1:Deployment|shop/orders"
    objects[key] = copy.deepcopy(objects[key])
    objects[key]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10
    spec = body(ok(render("permissive", objects=objects)), "orders")["spec"]
    assert "spec" not in spec["template"]


def test_patch_force_in_the_environment_is_refused_before_any_resource(monkeypatch):
    monkeypatch.setenv("PULUMI_K8S_ENABLE_PATCH_FORCE", "true")
    run = run_program(config("discovery"), stack="local", cluster=team_cluster())
    assert run.error is not None and "PULUMI_K8S_ENABLE_PATCH_FORCE=true" in run.error
    assert run.resources == []


# --- capacity -----------------------------------------------------------------------------------------


def test_a_roll_whose_pods_cannot_fit_the_node_group_is_refused_with_the_figures():
    """On eks, 2 x t3.medium hold 2 x (17 - 4) = 26 pods besides their DaemonSets. The platform takes 13
    (no check Jobs), web 2, stock 3, orders 8: 26 at discovery; rolling orders in adds its maxSurge
    (25% of 8 = 2), and 28 pods do not fit (migration/capacity.py)."""
    objects = team_cluster()
    key = "kubernetes:apps/v1:Deployment|shop/orders"
    objects[key] = copy.deepcopy(objects[key])
    objects[key]["spec"]["replicas"] = 8
    cfg = {**config("permissive"), "platform": "eks"}
    run = run_program(cfg, stack="dev", cluster=objects)
    assert run.error is not None
    assert "config consul-mesh-migration:cluster.desiredSize:" in run.error
    assert "at the peak of this `up`" in run.error and "cluster.desiredSize is 2" in run.error
    assert not [r for r in run.resources if r.kind in ("DeploymentPatch", "StatefulSetPatch")]
    # The same fleet at discovery rolls nothing: it fits.
    assert run_program({**cfg, "phase": "discovery"}, stack="dev", cluster=objects).error is None


def test_a_service_with_no_kubernetes_service_fails_its_read_before_any_migration_object():
    """Consul registers a pod through the Service that selects it, named like the service; without it
    the pods' init container would wait forever (consul-k8s connect-init "Unable to find registered
    services"). The program reads Service shop/orders at preview; a missing object fails that read
    with the engine's own line (pulumi step.go ReadStep.Apply), before anything changes."""
    objects = {**team_cluster(), "kubernetes:core/v1:Service|shop/orders": None}
    run = run_program(config("discovery"), stack="local", cluster=objects)
    assert run.error is not None and "resource 'shop/orders' does not exist" in run.error
    assert not [r for r in run.resources if r.kind in ("DeploymentPatch", "StatefulSetPatch")]
    assert not [r for r in run.resources if "mesh_config:MeshConfig$" in r.urn]

"""Run the real Pulumi program under Pulumi's mocks: no CLI, no cloud, no cluster.

Every registered resource is recorded with its type, name, inputs, parent, provider and
dependencies, together with the stack outputs. The tests, `make plan` and `make bench` all ask
through `run_program` what a given config produces.

Stack config is read the way the Pulumi CLI reads it: Pulumi.yaml defaults, then
Pulumi.<stack>.yaml, then the overrides given here (plain values, objects or lists).
"""

from __future__ import annotations

import json
import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGION = "us-west-2"


@dataclass
class Resource:
    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    parent: str
    provider: str
    dependencies: list[str]
    options: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def k8s_name(self) -> str | None:
        md = self.inputs.get("metadata") or {}
        return md.get("name")

    @property
    def k8s_namespace(self) -> str | None:
        md = self.inputs.get("metadata") or {}
        return md.get("namespace")


@dataclass
class Run:
    config: dict[str, str]
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    output_dependencies: dict[str, set[str]] = field(default_factory=dict)  # output -> URNs it waits for
    error: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)  # (type, id) of every `get` the program made

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None, *, k8s_name: str | None = None) -> Resource:
        found = [
            r
            for r in self.of_type(type_)
            if (name is None or r.name == name) and (k8s_name is None or r.k8s_name == k8s_name)
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one {type_} {name or k8s_name}, found {[r.name for r in found]}")
        return found[0]

    def by_urn(self, urn: str) -> Resource | None:
        return next((r for r in self.resources if r.urn == urn), None)

    def ancestors(self, res: Resource) -> list[Resource]:
        out = []
        cur = self.by_urn(res.parent)
        while cur is not None:
            out.append(cur)
            cur = self.by_urn(cur.parent)
        return out

    def depends_on(self, res: Resource, other: Resource) -> bool:
        """True when `res` waits for `other`, directly, through its parents, or through `other`'s children."""
        targets = {other.urn} | {r.urn for r in self.resources if other in self.ancestors(r)}
        chain = [res, *self.ancestors(res)]
        seen: set[str] = set()
        todo = [d for r in chain for d in r.dependencies]
        while todo:
            urn = todo.pop()
            if urn in targets:
                return True
            if urn in seen:
                continue
            seen.add(urn)
            dep = self.by_urn(urn)
            if dep is not None:
                todo.extend(dep.dependencies)
                todo.extend(r.urn for r in self.resources if r.parent == urn)  # a component waits for its children
        return False


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The flat `project:key` -> string config the CLI would hand the program."""
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    name = project["name"]
    cfg: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        key = key if ":" in key else f"{name}:{key}"
        cfg[key] = value if isinstance(value, str) else json.dumps(value)

    for key, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            put(key, decl["default"])
    stack_file = PROJECT_DIR / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        for key, value in ((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}).items():
            put(key, value)
    for key, value in (overrides or {}).items():
        put(key, value)
    return cfg


def _fake_state(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs a real deployment would report, in camelCase, for the types whose outputs we read."""
    state = dict(inputs)
    state.setdefault("arn", f"arn:aws:mock:{REGION}:{ACCOUNT}:{typ.rsplit(':', 1)[-1].lower()}/{name}")
    state.setdefault("name", name)
    if typ == "eks:index:Cluster":
        issuer = f"oidc.eks.{REGION}.amazonaws.com/id/MOCK{sum(map(ord, name))}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": "https://mock.eks", "certificate-authority-data": "Zm9v"}}
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [{"name": name, "user": {"token": "mock"}}],
        }
        state.update(
            kubeconfig=kubeconfig,
            kubeconfigJson=json.dumps(kubeconfig),
            oidcIssuer=issuer,
            oidcProviderUrl=f"https://{issuer}",
            oidcProviderArn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer}",
            clusterSecurityGroupId="sg-cluster",
            nodeSecurityGroupId="sg-node",
        )
    elif typ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{state['name']}"
    elif typ == "aws:s3/bucket:Bucket":
        state["bucket"] = f"{inputs.get('bucketPrefix', '')}mock"
    elif typ == "aws:iam/policy:Policy":
        state["arn"] = f"arn:aws:iam::{ACCOUNT}:policy/{state['name']}"
    elif typ.startswith("kubernetes:"):
        metadata = dict(inputs.get("metadata") or {})
        metadata.setdefault("name", name)
        state["metadata"] = metadata
        if typ == "kubernetes:core/v1:Service":
            state["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{name}.elb.{REGION}.amazonaws.com"}]}}
    return state


def _fake_call(token: str, args: dict[str, Any]) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {
            "names": [f"{REGION}{z}" for z in "abcd"],
            "zoneIds": [f"usw2-az{i}" for i in range(1, 5)],
            "id": REGION,
        }
    if token == "aws:index/getRegion:getRegion":
        return {"name": REGION, "region": REGION, "id": REGION}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/mock", "userId": "MOCK", "id": ACCOUNT}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:iam/getSessionContext:getSessionContext":
        return {"arn": args.get("arn", ""), "issuerArn": f"arn:aws:iam::{ACCOUNT}:role/deployer", "id": "ctx"}
    return {}


def live_key(type_: str, id_: str) -> str:
    """How `run_program(cluster=...)` names a live object: its Pulumi type and its id (`namespace/name`)."""
    return f"{type_}|{id_}"


def _run_main(path: str) -> None:
    runpy.run_path(path, run_name="__main__")


def run_program(
    overrides: Mapping[str, Any] | None = None,
    *,
    stack: str = "dev",
    deployed: Mapping[str, Any] | None = None,
    preview: bool = False,
    main: Path | None = None,
    cluster: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> Run:
    """Evaluate the program under mocks. `deployed`: the outputs the stack reports as deployed.

    `main` runs another program file with the same config (the benchmark's empty program).
    `cluster`: the live objects a `get` reads (`live_key(type, id)` -> the object as the API server
    returns it, or None: no such object, and the read fails as the engine fails it). An object it does
    not hold reads as its name only, as `make plan` sees the cluster: what the program decides from a
    live object is then left to preview.
    """
    import pulumi
    from pulumi.runtime import mocks as pm
    from pulumi.runtime.proto import resource_pb2
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    run = Run(config=stack_config(stack, overrides))
    prior = dict(deployed or {})

    live = dict(cluster or {})

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            if args.typ == "pulumi:pulumi:StackReference":
                return args.name, {"name": args.name, "outputs": prior, "secretOutputNames": []}
            if args.resource_id:  # a `get`: MockMonitor.ReadResource
                run.reads.append((args.typ, args.resource_id))
                key = live_key(args.typ, args.resource_id)
                if key in live and live[key] is None:
                    # What the engine says when the provider finds nothing (pulumi pkg/resource/deploy/
                    # step.go ReadStep.Apply): the read fails, and with it the update.
                    raise LookupError(f"resource '{args.resource_id}' does not exist")
                found = live.get(key)
                if found is not None:
                    return args.resource_id, dict(found)
            return f"{args.name}-id", _fake_state(args.typ, args.name, args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
            run.calls.append({"token": args.token, "args": args.args})
            return _fake_call(args.token, args.args), []  # no check failures (None breaks MockMonitor.Invoke)

    class Monitor(pm.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            resp = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                run.resources.append(
                    Resource(
                        type=request.type,
                        name=request.name,
                        urn=resp.urn,
                        custom=bool(request.custom),
                        inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                        parent=request.parent,
                        provider=request.provider,
                        dependencies=list(request.dependencies),
                        options={
                            "protect": bool(request.protect),
                            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                            "ignoreChanges": list(request.ignoreChanges),
                            "replaceOnChanges": list(request.replaceOnChanges),
                            "retainOnDelete": bool(request.retainOnDelete),
                            "deletedWith": request.deletedWith,
                            "version": request.version,
                            "aliases": len(request.aliases),
                            "aliasSpecs": [_alias(a) for a in request.aliases],
                            "importId": request.importId,
                            "transforms": len(request.transforms),
                            "additionalSecretOutputs": list(request.additionalSecretOutputs),
                        },
                    )
                )
            return resp

        # Resource references cannot cross the mock monitor's event loop; pass them as URNs.
        def SupportsFeature(self, request: Any) -> Any:
            if request.id == "resourceReferences":
                return type("SupportsFeatureResponse", (), {"hasSupport": False})
            return super().SupportsFeature(request)

        def GetDeploymentInfo(self, request: Any) -> Any:
            info = super().GetDeploymentInfo(request)
            feats = [
                f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES
            ]
            return resource_pb2.DeploymentInfo(supportedFeatures=feats)

    mocks = Mocks()
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["name"]
    # A fresh root stack per run: set_mocks keeps the last one, and with it the last outputs.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=Monitor(mocks))
    pulumi.runtime.set_all_config(run.config, [])
    program = str(main or PROJECT_DIR / "__main__.py")
    cwd = os.getcwd()
    os.chdir(PROJECT_DIR)
    try:
        _sync_await(run_pulumi_func(lambda: _run_main(program)))
        root = pulumi.runtime.get_root_resource()
        exported = dict(getattr(root, "outputs", {}) or {})
        if exported:
            keys = list(exported)

            def collect(values: list[Any]) -> None:
                run.outputs.update(zip(keys, values, strict=True))

            all_outputs = pulumi.Output.all(*[exported[k] for k in keys]).apply(collect)
            _sync_await(run_pulumi_func(lambda: _sync_await(all_outputs.future())))
            for key in keys:
                value = exported[key]
                if isinstance(value, pulumi.Output):
                    if _sync_await(value.is_secret()):
                        run.secret_outputs.add(key)
                    resources = _sync_await(value.resources())
                    run.output_dependencies[key] = {_sync_await(r.urn.future()) or "" for r in resources}
    except Exception as e:  # the caller inspects run.error
        run.error = f"{type(e).__name__}: {e}"
        _REPORTED.add(run.error)
        _drain()
    finally:
        os.chdir(cwd)
    return run


def _alias(alias: Any) -> dict[str, str]:
    """A registered alias as {urn} or {name, type, parent}: what the engine matches old state against."""
    if alias.HasField("spec"):
        spec = alias.spec
        return {"name": spec.name, "type": spec.type, "parent": spec.parentUrn}
    return {"urn": alias.urn}


# The errors of failed runs, already in their Run.error.
_REPORTED: set[str] = set()


def _quiet_reported(loop: Any, context: dict[str, Any]) -> None:
    """The loop's exception handler: a failed run leaves Outputs whose futures hold its error and that
    nothing awaits; when the garbage collector frees them, asyncio logs each with its traceback. Those
    are dropped (the error is in Run.error). Formatting them was also a hazard: CPython 3.11's traceback
    calls ast.parse, and a collection that runs inside another ast.parse makes that one fail with
    "SystemError: AST constructor recursion depth mismatch"."""
    exc = context.get("exception")
    if context.get("message") == "Future exception was never retrieved" and f"{type(exc).__name__}: {exc}" in _REPORTED:
        return
    loop.default_exception_handler(context)


def _drain() -> None:
    """Settle what a failed run left pending, so that its errors don't surface in the next run."""
    import asyncio

    from pulumi.runtime.settings import SETTINGS, _get_rpc_manager

    loop = asyncio.get_event_loop()
    loop.set_exception_handler(_quiet_reported)
    tracked: set[asyncio.Future[Any]] = SETTINGS.outputs  # type: ignore[attr-defined]  # a context property
    while tracked:
        pending = list(tracked)
        tracked.clear()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    _get_rpc_manager().clear()

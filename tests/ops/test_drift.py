"""Drift (ops/drift.py) read from `pulumi preview --refresh --json` documents.

tests/data/drift/*.json follow the CLI's preview digest (display.PreviewDigest in pulumi/pulumi
sdk/go/common/display, written by ShowPreviewDigest in pkg/backend/display/json.go): steps with
op, urn, oldState/newState (apitype.ResourceV3), diffReasons and detailedDiff. No CLI runs here,
so they were written in that shape by hand, for the drift the drift workflow is for: the hardened
dev stack with ServiceDefaults `api` and the Mesh set back to permissive by hand, a Deployment
deleted by hand and a security group rule widened in the console.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops import drift
from ops.drift import Drift
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "drift"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def test_a_hand_made_change_is_named_with_its_type_object_and_fields():
    found = drift.drifted(load("hardened-drifted.json"))
    assert found[0] == Drift(
        "update",
        "kubernetes:consul.hashicorp.com/v1alpha1:ServiceDefaults",
        "api/api",
        ('spec.mutualTLSMode: "permissive" -> (absent)',),
    )
    assert found[0].line() == (
        "update  kubernetes:consul.hashicorp.com/v1alpha1:ServiceDefaults  api/api  "
        'spec.mutualTLSMode: "permissive" -> (absent)'
    )
    assert found[2].fields == ("spec.allowEnablingPermissiveMutualTLS: true -> false",)


def test_every_drifted_resource_is_one_line_and_nothing_else_is():
    found = drift.drifted(load("hardened-drifted.json"))
    assert [(d.op, d.type.rsplit(":", 1)[-1], d.name) for d in found] == [
        ("update", "ServiceDefaults", "api/api"),  # its `refresh` step is the reading, not a second drift
        ("create", "Deployment", "web/web-v2"),  # deleted by hand: the up would create it again
        ("update", "Mesh", "consul/mesh"),
        ("update", "SecurityGroupRule", "network-nodes-ingress"),  # not Kubernetes: the resource's name
    ]
    # Not drift: the StackReference's read, and the root stack, whose only change is its outputs.
    assert not any(d.type.startswith("pulumi:pulumi:") for d in found)
    assert found[1].fields == ("missing: the up would create it",)
    assert found[3].fields == ('cidrBlocks[0]: "0.0.0.0/0" -> "10.0.0.0/16"',)


def test_the_command_fails_with_the_drift_and_passes_without(tmp_path, capsys):
    assert drift.main([str(DATA / "hardened-drifted.json"), "--stack", "dev"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("drift in stack dev: 4 object(s) differ")
    assert len(out) == 5 and "api/api" in out[1]
    assert drift.main([str(DATA / "clean.json"), "--stack", "dev"]) == 0
    assert capsys.readouterr().out.strip() == "no drift in stack dev (64 resources as the program says)"


def test_stack_output_changes_alone_are_not_drift():
    digest = load("clean.json")
    root = digest["steps"][0]
    digest["steps"] = [root | {"op": "update"}]
    assert drift.drifted(digest) == []


def test_a_failed_preview_is_no_proof_of_no_drift(capsys):
    digest = load("clean.json")
    digest["diagnostics"].append(
        {"message": "error: configured Kubernetes cluster is unreachable\n", "severity": "error"}
    )
    status, text = drift.report(digest, "dev")
    assert status == 2 and "cluster is unreachable" in text


@pytest.mark.parametrize("text", ["", "[]", '{"steps": {}}', "not json"])
def test_input_that_is_no_preview_digest_is_refused(tmp_path, capsys, text):
    path = tmp_path / "preview.json"
    path.write_text(text)
    assert drift.main([str(path)]) == 2
    assert "drift:" in capsys.readouterr().err


def test_a_replacement_and_a_provider_without_detailed_diff_still_name_fields():
    step = {
        "op": "replace",
        "urn": "urn:pulumi:dev::p::aws:eks/cluster:Cluster::cluster",
        "replaceReasons": ["roleArn"],
        "detailedDiff": None,
    }
    assert drift.drifted({"steps": [step]}) == [
        Drift("replace", "aws:eks/cluster:Cluster", "cluster", ("roleArn", "(replaced)"))
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.sources[0].action", "allow"),
        ('metadata.labels["app.kubernetes.io/name"]', "api"),
        ("spec.sources[3].action", None),
        ("spec.missing", None),
    ],
)
def test_property_paths_reach_into_lists_and_dotted_keys(path, value):
    tree = {"spec": {"sources": [{"action": "allow"}]}, "metadata": {"labels": {"app.kubernetes.io/name": "api"}}}
    found = drift.value_at(tree, path)
    assert (None if found is drift.value_at({}, "x") else found) == value


def test_a_value_with_a_newline_stays_on_its_line():
    step = {
        "op": "update",
        "urn": "urn:pulumi:dev::p::kubernetes:core/v1:ConfigMap::cm",
        "oldState": {"outputs": {"data": {"x": "a\n::error::forged"}}},
        "newState": {"type": "kubernetes:core/v1:ConfigMap", "inputs": {"data": {"x": "a"}}},
        "detailedDiff": {"data.x": {"kind": "update", "inputDiff": False}},
    }
    (found,) = drift.drifted({"steps": [step]})
    assert "\n" not in found.line()


def test_the_read_only_drift_check_leaves_out_what_it_may_not_refresh(program):
    """Without it the daily drift check fails on every run at level `preview` (no Secrets): a Helm
    release is refreshed from Helm's release Secrets (pulumi-kubernetes v4.32.0
    provider/pkg/provider/helm_release.go Read -> resourceReleaseLookup). `pulumi stack export` writes
    apitype.UntypedDeployment: {"version": 3, "deployment": {"resources": [{urn, type, ...}]}}."""
    run = program({"phase": "hardened"})
    export = {"version": 3, "deployment": {"resources": [{"urn": r.urn, "type": r.type} for r in run.resources]}}
    releases = sorted(r.urn for r in run.resources if r.type == "kubernetes:helm.sh/v3:Release")
    assert len(releases) >= 2  # Consul and the load balancer controller
    secrets = sorted(r.urn for r in run.resources if r.type == "kubernetes:core/v1:Secret")  # the snapshot token's
    assert sorted(drift.unreadable(export)) == sorted(releases + secrets)
    assert drift.unreadable({"version": 3, "deployment": {}}) == []

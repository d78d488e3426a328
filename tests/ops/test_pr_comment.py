"""The comments CI posts on pull requests (ops/pr_comment.py): a stack's `up` after merge, a demo."""

from __future__ import annotations

import json

from ops import pr_comment

OUTPUTS = {
    "phase": "strict",
    "nextPhase": "virtual",
    "verify": {"curl": "for i in $(seq 20); do curl -s http://gw/; done", "expectUpstreams": ["api (mesh)"]},
    "gatewayUrl": "http://gw.example",
    "kubeconfig": "[secret]",
    "vpcId": "vpc-0abc",
}

# The shape of a failed `pulumi up` (non-interactive): the resource table, then Diagnostics.
POSTCHECK_FAILED = """\
Updating (dev):
 +  pulumi:pulumi:Stack consul-mesh-migration-dev running
 +  kubernetes:batch/v1:Job migration-postcheck creating failed 1 error
 ~  kubernetes:consul.hashicorp.com/v1alpha1:ServiceDefaults mesh-config-api-defaults updated (1s) [diff: ~spec]
Diagnostics:
  kubernetes:batch/v1:Job (migration-postcheck):
    error: 1 error occurred:
    \t* Job consul/postcheck-strict failed: postcheck: web -> api: got "api (non-mesh)", want "api (mesh)"

  pulumi:pulumi:Stack (consul-mesh-migration-dev):
    error: update failed

Resources:
    ~ 1 updated
    62 unchanged
"""

PLAN_MISMATCH = """\
Updating (dev):
\x1b[31merror: update failed\x1b[0m
Diagnostics:
  kubernetes:apps/v1:Deployment (services-api-v1):
    \x1b[31merror:\x1b[0m resource violates plan: properties changed: ~~spec[{replicas: 1}!={replicas: 2}]

  pulumi:pulumi:Stack (consul-mesh-migration-dev):
    error: update failed
"""


def test_the_postcheck_line_says_why_an_up_failed():
    assert pr_comment.failing_line(POSTCHECK_FAILED) == (
        '* Job consul/postcheck-strict failed: postcheck: web -> api: got "api (non-mesh)", want "api (mesh)"'
    )


def test_without_a_postcheck_the_first_real_error_line_is_quoted():
    assert pr_comment.failing_line(PLAN_MISMATCH) == (
        "error: resource violates plan: properties changed: ~~spec[{replicas: 1}!={replicas: 2}]"
    )
    assert pr_comment.failing_line("error: 2 errors occurred:\n  * a\n  * b\n") == "error: 2 errors occurred: * a"
    assert pr_comment.failing_line("Updating (dev):\nerror: update failed\n") is None


def test_a_successful_deploy_posts_the_phase_and_what_to_check_and_no_other_output():
    text = pr_comment.comment("deploy", "dev", "success", OUTPUTS, run_url="https://ci/run/1")
    assert text.startswith("### `pulumi up` of stack `dev` with the reviewed plan: succeeded")
    assert "- `phase`: `strict`" in text and "- `nextPhase`: `virtual`" in text
    assert '"expectUpstreams": [\n    "api (mesh)"\n  ]' in text
    assert "kubeconfig" not in text and "vpc-0abc" not in text and "gw.example" not in text
    assert text.rstrip().endswith("[The run](https://ci/run/1)")


def test_a_failed_deploy_quotes_the_failing_line():
    text = pr_comment.comment("deploy", "dev", "failure", OUTPUTS, POSTCHECK_FAILED)
    assert "**failed**" in text
    assert 'postcheck: web -> api: got "api (non-mesh)"' in text


def test_the_demo_comment_gives_the_gateway_and_the_checks():
    text = pr_comment.comment("demo", "demo-pr-12", "success", OUTPUTS)
    assert text.startswith("### Demo `demo-pr-12`: ready")
    assert "Gateway: http://gw.example" in text and "expectUpstreams" in text


def test_backticks_in_quoted_text_cannot_end_the_code_block():
    block = pr_comment.fenced("a ``` b")
    assert block.startswith("````\n") and block.endswith("\n````")


def test_the_command_line_reads_the_outputs_and_the_log(tmp_path, capsys):
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    (tmp_path / "up.log").write_text(POSTCHECK_FAILED)
    args = ["deploy", "--stack", "dev", "--outcome", "failure", "--outputs", str(tmp_path / "outputs.json")]
    assert pr_comment.main([*args, "--log", str(tmp_path / "up.log")]) == 0
    out = capsys.readouterr().out
    assert "postcheck-strict failed" in out and "`strict`" in out
    # A first `up` that failed has no outputs yet.
    assert pr_comment.main(["demo", "--stack", "demo-pr-1", "--outcome", "failure"]) == 0
    assert "(no stack outputs)" in capsys.readouterr().out

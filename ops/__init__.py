"""What make and CI run, each as `python -m ops.<command>`:

make plan             plan.py        the offline rollout plan, under mocks (program/offline.py), with
                                     its hourly cost (cost.py)
make advance          advance.py     one verified step, and the step back when its postcheck fails
make demo             demo.py        ephemeral demo stacks, and one per pull request in CI
make discover         discover.py    a draft `services` config from a live cluster (kube.py: read-only)
make up, preview      backend.py     where the state lives; toolchain.py: the Pulumi and AWS CLIs
CI                    drift.py, pr_comment.py, plans.py (what a reviewed plan is bound to)

workspace.py          the one Automation API workspace advance and demo open
"""

"""What make and CI run: `python -m ops.<command>` (plan, advance, demo, drift, pr_comment, cost, toolchain)."""

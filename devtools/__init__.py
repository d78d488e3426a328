"""What developers run: `python -m devtools.<tool>` (bench, bench_checks, snapshot)."""

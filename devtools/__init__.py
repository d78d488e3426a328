"""What developers run, each as `python -m devtools.<tool>`:

make bench      bench.py          what the stack costs to evaluate, the planner, the checks
                bench_checks.py   the check script against loopback stubs (a step's 60 s budget)
                bench_discover.py make discover on a recorded 200-service cluster (cluster.py)
make snapshot   snapshot.py       what the default stacks render, held in tests/data/default_output.json
"""

"""The snapshot Jobs' program: Consul snapshots to S3 and back, run alone in stock Python (consul_snapshot.py)."""

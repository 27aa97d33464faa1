"""vmnet benchmarks: `python benchmarks/run.py [--quick] [--json]` (docs/performance.md)."""

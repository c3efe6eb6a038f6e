"""Benchmarks: runnable scripts (`python -m benchmarks.<name>` from the repo root) and the shared
helpers they import (`identity_data`, `identity_eval`). Figures go to benchmarks/results.md."""

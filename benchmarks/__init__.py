"""Benchmarks: ``python -m benchmarks.<name>`` (or ``./run.sh bench <name>``)."""

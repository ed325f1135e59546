"""Benchmarks, on demand: ``python -m bench`` (see bench/harness.py)."""

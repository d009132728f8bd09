"""Benchmarks: commands that measure, print and write JSON (never timed unit tests)."""

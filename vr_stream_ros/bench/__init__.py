"""Benchmarks run by make targets (not installed on a robot unless asked for)."""

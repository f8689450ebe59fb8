"""Latency bookkeeping: stage windows and percentiles, per-frame profiler, plots."""

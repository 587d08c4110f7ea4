"""Benchmark grids: many fit + test runs into one results table."""

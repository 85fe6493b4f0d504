"""Measured figures for the pipeline's layer: `python -m benchmarks` (see README.md)."""

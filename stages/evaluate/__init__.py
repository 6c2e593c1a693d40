"""The `evaluate` stage: metrics.py (each metric), stats.py (bootstrap), scoring.py, runner.py, main.py."""

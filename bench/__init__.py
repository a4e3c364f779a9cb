"""Benchmarks: run each as a module from the repo root, e.g. ``.venv/bin/python -m bench.core_overhead``.

Results (JSON) go to ``bench/results/`` (gitignored); the figures quoted in BENCHMARKS.md come from there.
"""

"""Test support: tiny in-process models and tokenizers (tiny.py), synthetic traces (ray_synth.py).
Used by the tests and the benchmarks; not part of the curate package."""

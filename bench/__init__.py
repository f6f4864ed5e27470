"""Benchmarks of the zoo against what a user would use instead: `make bench` (QUICK=1 for a short run)."""

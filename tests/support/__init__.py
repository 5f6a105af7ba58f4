"""Helpers shared by the tests and the benchmark (both resolves)."""

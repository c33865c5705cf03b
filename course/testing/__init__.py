"""Test support shipped for the tests and benchmarks only; product code never imports it."""

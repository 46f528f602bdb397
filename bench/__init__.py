"""Benchmarks of the auth server: `python -m bench` (see bench/README.md).

Every figure is a ratio or a curve measured in the same run against a reference measured
on the same machine, so the numbers mean something on any machine.
"""

"""Performance harness: the servers and load runs behind `make bench` (see docs/benchmarks.md)."""

"""The load tester behind ``mnist-client bench``.

>>> from mnist_client.bench import BenchConfig, run_bench, random_digits   # doctest: +SKIP
>>> result = run_bench(BenchConfig("127.0.0.1:8500", concurrency=16, duration=5), random_digits())
>>> result["requests_per_s"], result["latency_ms"]["p99"]
"""

from mnist_client.bench.config import BenchConfig, random_digits
from mnist_client.bench.report import format_result
from mnist_client.bench.runner import BenchError, run_bench

__all__ = ["BenchConfig", "BenchError", "format_result", "random_digits", "run_bench"]

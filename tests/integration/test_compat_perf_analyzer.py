"""Triton's load generator perf_analyzer against our server, in both of its gRPC dialects.

Each run is bounded: concurrency 8, exactly REQUESTS requests (no stability search), a timeout.
Zero errors means: perf_analyzer exits 0, every request it recorded got a response, and the
server counted exactly that many OK calls of the method and no other status code.
"""

from __future__ import annotations

import re

import pytest

from tests.support import perf_analyzer
from tests.support.server_process import metric, scrape_metrics

CONCURRENCY = 8
REQUESTS = 400
MODES = {
    "triton": ("inference.GRPCInferenceService/ModelInfer", ()),
    # TF Serving mode needs the batch size: it sends [b, 28, 28] under the signature's input name.
    "tfserving": ("tensorflow.serving.PredictionService/Predict", ("-b", "1")),
}


def calls(samples: dict, method: str) -> dict[str, float]:
    codes = {
        dict(labels).get("code")
        for (name, labels), _ in samples.items()
        if name == "mnist_serving_requests_total" and dict(labels).get("method") == method
    }
    return {code: metric(samples, "mnist_serving_requests_total", method=method, code=code) for code in codes}


@pytest.mark.slow
@pytest.mark.parametrize("service_kind", sorted(MODES))
def test_perf_analyzer_runs_without_errors(server, service_kind):
    method, extra = MODES[service_kind]
    before = calls(scrape_metrics(server.http_url), method)
    run = perf_analyzer.run(
        server.target,
        service_kind=service_kind,
        model="mnist",
        concurrency=CONCURRENCY,
        request_count=REQUESTS,
        extra=extra,
        timeout_s=180,
    )
    assert run.returncode == 0, run.output[-4000:]
    assert "error" not in run.output.lower(), run.output[-4000:]
    assert len(run.requests) == REQUESTS and run.completed == REQUESTS
    after = calls(scrape_metrics(server.http_url), method)
    delta = {code: after.get(code, 0) - before.get(code, 0) for code in after}
    assert delta.pop("OK") == REQUESTS
    assert not any(delta.values()), f"non-OK calls during the run: {delta}"
    if service_kind == "triton":  # it read our ModelStatistics for its server-side breakdown
        # perf_analyzer starts its callers before it reads the first statistics snapshot: with a fast
        # model (LiteRT) up to one request per caller is answered, and counted, before that snapshot
        found = re.search(r"Successful request count: (\d+)", run.output)
        assert found and REQUESTS - CONCURRENCY <= int(found[1]) <= REQUESTS, run.output[-4000:]

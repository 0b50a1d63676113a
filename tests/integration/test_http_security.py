"""The HTTP port under the gRPC port's rules: TLS when the gRPC port has it, bearer tokens on every
inference route (probes and the page open), token lines limited to a gRPC service mean the same
over HTTP, and mutual TLS: probes and metrics open without a client certificate, everything else
needs one. Certificates are made on the fly; real server, real TLS."""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.error
import urllib.request

import pytest

from tests.support.certs import make_pki, server_security_flags, write_token_file
from tests.support.server_process import HOST, ServerProcess
from tests.support.synthetic import synthetic_arrays

TOKEN = secrets.token_urlsafe(32)
STATUS_ONLY_TOKEN = secrets.token_urlsafe(32)  # limited to TF Serving's ModelService
DIGITS, LABELS = synthetic_arrays(4, seed=7)
PREDICT = "/v1/models/mnist:predict"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return write_token_file(
        tmp_path_factory.mktemp("tokens"), f"{TOKEN}\n{STATUS_ONLY_TOKEN} tensorflow.serving.ModelService\n"
    )


@pytest.fixture(scope="module")
def tls_server(exported_model, pki, token_file):
    with ServerProcess(
        ["--model-dir", str(exported_model), *server_security_flags(pki, token_file=token_file)]
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def mtls_server(exported_model, pki):
    with ServerProcess(["--model-dir", str(exported_model), *server_security_flags(pki, mutual=True)]) as proc:
        yield proc


def context(pki, client: bool = False, rogue: bool = False) -> ssl.SSLContext:
    result = ssl.create_default_context(cafile=pki.ca_cert)
    if client:
        result.load_cert_chain(pki.client_cert, pki.client_key)
    if rogue:
        result.load_cert_chain(pki.rogue_client_cert, pki.rogue_client_key)
    return result


def call(
    url: str, ssl_context=None, token: str | None = None, body: dict | None = None, authorization: str | None = None
) -> tuple[int, dict | str, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=15, context=ssl_context) as response:
            status, text, headers = response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, text, headers = error.code, error.read().decode(), dict(error.headers)
    try:
        return status, json.loads(text), headers
    except json.JSONDecodeError:
        return status, text, headers


def predict_body() -> dict:
    return {"instances": DIGITS.tolist()}


def test_the_http_port_speaks_tls_with_the_grpc_ports_certificate(tls_server, pki):
    assert tls_server.http_url.startswith("https://")
    status, answer, _ = call(tls_server.http_url + PREDICT, context(pki), TOKEN, predict_body())
    assert status == 200, answer
    assert [row["classes"] for row in answer["predictions"]] == LABELS.tolist()
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port: no answer in clear
        urllib.request.urlopen(f"http://{HOST}:{tls_server.http_port}/readyz", timeout=5)
    with pytest.raises(urllib.error.URLError):  # a client that does not trust our CA
        urllib.request.urlopen(
            tls_server.http_url + "/readyz", timeout=5, context=ssl.create_default_context(cafile=pki.rogue_ca_cert)
        )


@pytest.mark.parametrize(
    "token,authorization,message",
    [
        (None, None, "missing credentials"),
        (None, "Basic dXNlcjpwYXNz", "malformed credentials"),
        ("x" * 40, None, "invalid credentials"),
    ],
)
def test_inference_routes_need_a_valid_token(tls_server, pki, token, authorization, message):
    for path, body in (
        (PREDICT, predict_body()),
        ("/v1/models/mnist", None),
        ("/v1/models/mnist/metadata", None),
        ("/v2/models/mnist", None),
        ("/api/v1/models", None),
    ):
        status, answer, headers = call(tls_server.http_url + path, context(pki), token, body, authorization)
        assert status == 401, (path, answer)
        assert message in answer["error"]
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_a_token_limited_to_one_service_is_forbidden_elsewhere(tls_server, pki):
    status, answer, _ = call(tls_server.http_url + "/v1/models/mnist", context(pki), STATUS_ONLY_TOKEN)
    assert status == 200, answer  # TF Serving model status is ModelService
    status, answer, _ = call(tls_server.http_url + PREDICT, context(pki), STATUS_ONLY_TOKEN, predict_body())
    assert status == 403
    assert "may not call tensorflow.serving.PredictionService" in answer["error"]


def test_probes_metrics_kserve_health_and_the_page_need_no_token(tls_server, pki):
    for path in ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready", "/"):
        status, _, _ = call(tls_server.http_url + path, context(pki))
        assert status == 200, path
    assert TOKEN not in tls_server.log_text()


def test_mutual_tls_probes_open_inference_needs_a_client_certificate(mtls_server, pki):
    url = mtls_server.http_url
    for path in ("/healthz", "/readyz", "/metrics"):  # kubelet and Prometheus have no client certificate
        assert call(url + path, context(pki))[0] == 200, path
    status, answer, _ = call(url + PREDICT, context(pki), body=predict_body())
    assert status == 403
    assert "a client certificate is required" in answer["error"]
    status, answer, _ = call(url + PREDICT, context(pki, client=True), body=predict_body())
    assert status == 200, answer
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionResetError)):  # a CA we do not trust
        call(url + "/readyz", context(pki, rogue=True))

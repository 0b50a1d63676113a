"""TLS, mutual TLS and bearer tokens on the real server, with certificates made on the fly.

Two servers: `tls_server` (TLS + tokens, health and reflection open as by default) and
`mtls_server` (mutual TLS + tokens, nothing open). Refusals are checked on the wire with raw
stubs (no retries, no waiting for readiness), successes through the real client library.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2 as kserve_pb2
from tritonclient.grpc import service_pb2_grpc as kserve_pb2_grpc

from mnist_client import ClientError, MnistClient, TlsConfig
from mnist_serving.v1 import classifier_pb2 as pb
from mnist_serving.v1 import classifier_pb2_grpc
from tests.support.certs import make_pki, server_security_flags, write_token_file
from tests.support.server_process import ServerProcess, metric, scrape_metrics
from tests.support.synthetic import synthetic_arrays

TOKEN = secrets.token_urlsafe(32)
OTHER_TOKEN = secrets.token_urlsafe(32)  # valid too: rotation keeps two lines
HEALTH_ONLY_TOKEN = secrets.token_urlsafe(32)
ONE_IMAGE = pb.ClassifyRequest(packed=pb.PackedImages(data=bytes(784), count=1, height=28, width=28))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return write_token_file(
        tmp_path_factory.mktemp("auth"),
        f"# rotated weekly\n{TOKEN}\n{OTHER_TOKEN}  # the next one\n\n{HEALTH_ONLY_TOKEN} grpc.health.v1.Health\n",
    )


@pytest.fixture(scope="module")
def tls_server(exported_model, pki, token_file):
    with ServerProcess(
        ["--model-dir", str(exported_model), *server_security_flags(pki, token_file=token_file)]
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def mtls_server(exported_model, pki, token_file):
    flags = server_security_flags(pki, mutual=True, token_file=token_file)
    with ServerProcess(["--model-dir", str(exported_model), *flags, "--auth-exempt-services", ""]) as proc:
        yield proc


def secure_channel(target: str, root_ca: str, cert: str | None = None, key: str | None = None) -> grpc.Channel:
    read = lambda path: open(path, "rb").read() if path else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(read(root_ca), read(key), read(cert))
    return grpc.secure_channel(target, credentials)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def rpc_error(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(request, timeout=10, **kwargs)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)  # a response stream fails when read
    return info.value


def test_tls_client_with_token_gets_the_same_answers_as_the_model(tls_server, pki):
    images, labels = synthetic_arrays(12, seed=31)
    with MnistClient(tls_server.target, tls=TlsConfig(root_ca=pki.ca_cert), token=TOKEN) as client:
        predictions = client.classify(images)
        assert np.mean([p.label for p in predictions] == labels) > 0.8
    with MnistClient(tls_server.target, tls=TlsConfig(root_ca=pki.ca_cert), token=OTHER_TOKEN) as client:
        assert [p.label for p in client.classify(images)] == [p.label for p in predictions]


def test_plaintext_and_untrusting_clients_cannot_talk_to_a_tls_port(tls_server, pki):
    for channel in (
        grpc.insecure_channel(tls_server.target),
        secure_channel(tls_server.target, root_ca=pki.rogue_ca_cert),
    ):  # does not trust our CA
        with channel:
            error = rpc_error(classifier_pb2_grpc.ClassifierStub(channel).Classify, ONE_IMAGE, metadata=bearer(TOKEN))
            assert error.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "metadata, message",
    [
        ((), "missing credentials: send `authorization: Bearer <token>` (gRPC metadata or HTTP header)"),
        ((("authorization", f"Basic {TOKEN}"),), "malformed credentials"),
        ((("authorization", "Bearer"),), "malformed credentials"),
        ((("authorization", f"Bearer {TOKEN} extra"),), "malformed credentials"),
        ((("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer {TOKEN}")), "malformed credentials"),
        (bearer(TOKEN[:-1]), "invalid credentials: the bearer token is not valid"),
        (bearer(TOKEN + "A"), "invalid credentials"),
        (bearer(secrets.token_urlsafe(32)), "invalid credentials"),
    ],
)
def test_no_or_bad_token_is_unauthenticated(tls_server, pki, metadata, message):
    with secure_channel(tls_server.target, pki.ca_cert) as channel:
        error = rpc_error(classifier_pb2_grpc.ClassifierStub(channel).Classify, ONE_IMAGE, metadata=metadata)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert message in error.details()


def test_a_valid_token_limited_to_health_is_permission_denied_elsewhere(tls_server, pki):
    with secure_channel(tls_server.target, pki.ca_cert) as channel:
        error = rpc_error(
            classifier_pb2_grpc.ClassifierStub(channel).Classify, ONE_IMAGE, metadata=bearer(HEALTH_ONLY_TOKEN)
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "may not call mnist_serving.v1.Classifier; it is limited to grpc.health.v1.Health" in error.details()
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10, metadata=bearer(HEALTH_ONLY_TOKEN)
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_every_protocol_and_call_kind_needs_the_token(tls_server, pki):
    with secure_channel(tls_server.target, pki.ca_cert) as channel:
        ours = classifier_pb2_grpc.ClassifierStub(channel)
        tf_serving = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        kserve = kserve_pb2_grpc.GRPCInferenceServiceStub(channel)
        calls = [
            (ours.Classify, ONE_IMAGE),
            (ours.ClassifyStream, iter([ONE_IMAGE])),
            (ours.GetModelInfo, pb.GetModelInfoRequest()),
            (tf_serving.Predict, predict_pb2.PredictRequest()),
            (kserve.ServerLive, kserve_pb2.ServerLiveRequest()),
            (kserve.ModelInfer, kserve_pb2.ModelInferRequest()),
            (kserve.ModelStreamInfer, iter([kserve_pb2.ModelInferRequest()])),
        ]
        for call, request in calls:
            assert rpc_error(call, request).code() is grpc.StatusCode.UNAUTHENTICATED, call
        assert kserve.ServerLive(kserve_pb2.ServerLiveRequest(), timeout=10, metadata=bearer(TOKEN)).live


def test_health_and_reflection_are_open_by_default(tls_server, pki):
    with secure_channel(tls_server.target, pki.ca_cert) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        [listed] = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        assert "mnist_serving.v1.Classifier" in {s.name for s in listed.list_services_response.service}


def test_refusals_are_counted_by_code(tls_server, pki):
    before = scrape_metrics(tls_server.http_url)
    with secure_channel(tls_server.target, pki.ca_cert) as channel:
        for _ in range(3):
            rpc_error(classifier_pb2_grpc.ClassifierStub(channel).Classify, ONE_IMAGE, metadata=bearer("x" * 20))
    after = scrape_metrics(tls_server.http_url)
    name, labels = (
        "mnist_serving_requests_total",
        dict(method="mnist_serving.v1.Classifier/Classify", code="UNAUTHENTICATED"),
    )
    assert metric(after, name, **labels) - metric(before, name, **labels) == 3
    assert "x" * 20 not in tls_server.log_text()  # presented tokens are never logged


def test_mutual_tls_lets_in_only_certificates_from_the_client_ca(mtls_server, pki):
    good = TlsConfig(root_ca=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key)
    with MnistClient(mtls_server.target, tls=good, token=TOKEN, health_check=False) as client:
        assert client.classify(np.zeros((2, 28, 28), np.uint8))[0].model_version == 1
        assert client.health() == "SERVING"  # --auth-exempt-services '': health needs the token too
    for cert, key in ((None, None), (pki.rogue_client_cert, pki.rogue_client_key)):
        with secure_channel(mtls_server.target, pki.ca_cert, cert, key) as channel:
            error = rpc_error(classifier_pb2_grpc.ClassifierStub(channel).Classify, ONE_IMAGE, metadata=bearer(TOKEN))
            assert error.code() is grpc.StatusCode.UNAVAILABLE


def test_with_nothing_exempt_health_needs_the_token(mtls_server, pki):
    with secure_channel(mtls_server.target, pki.ca_cert, pki.client_cert, pki.client_key) as channel:
        error = rpc_error(health_pb2_grpc.HealthStub(channel).Check, health_pb2.HealthCheckRequest())
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    tls = TlsConfig(root_ca=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key)
    with MnistClient(mtls_server.target, tls=tls, health_check=False, timeout=5) as client:  # no token
        with pytest.raises(ClientError) as info:
            client.health()
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tls-key", "{server_key}"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "{server_cert}", "--tls-key", "{client_key}"], "does the key belong to the certificate?"),
        (
            ["--tls-cert", "{server_cert}", "--tls-key", "{server_key}", "--tls-client-ca", "{token_file}"],
            "--tls-client-ca '{token_file}' is not a PEM file",
        ),
        (["--tls-client-ca", "{ca_cert}"], "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key"),
        (["--auth-token-file", "{short_tokens}"], "line 1: a token must be at least 16 characters"),
        (["--auth-token-file", "{empty_tokens}"], "holds no token"),
        (["--auth-token-file", "{missing}"], "cannot be read"),
    ],
)
def test_bad_security_flags_stop_the_server_with_a_message(exported_model, pki, token_file, tmp_path, flags, message):
    (tmp_path / "short").write_text("tooshort\n")
    (tmp_path / "empty").write_text("# nothing yet\n")
    paths = dict(
        server_key=pki.server_key,
        server_cert=pki.server_cert,
        client_key=pki.client_key,
        ca_cert=pki.ca_cert,
        token_file=str(token_file),
        short_tokens=str(tmp_path / "short"),
        empty_tokens=str(tmp_path / "empty"),
        missing=str(tmp_path / "missing"),
    )
    argv = [flag.format(**paths) for flag in flags]
    result = subprocess.run(
        [sys.executable, "-m", "mnist_server", "--model-dir", str(exported_model), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert message.format(**paths) in result.stderr

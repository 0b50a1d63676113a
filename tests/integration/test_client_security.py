"""The client's TLS, mutual-TLS and bearer-token options against a real server that requires them.

The server side of security has its own tests (test_security.py); these prove the client library
and the CLI pass the right credentials: certificates are generated for the test.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from mnist_client import AsyncMnistClient, ClientError, MnistClient, TlsConfig
from tests.support.certs import make_pki, server_security_flags, write_token_file
from tests.support.server_process import ServerProcess
from tests.support.synthetic import synthetic_arrays

TOKEN = "client-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return write_token_file(tmp_path_factory.mktemp("client-token"), TOKEN + "\n")


@pytest.fixture(scope="module")
def secured_server(exported_model, pki, token_file):
    """Mutual TLS and a bearer token, both required."""
    flags = server_security_flags(pki, mutual=True, token_file=token_file)
    with ServerProcess(["--model-dir", str(exported_model), *flags]) as server:
        yield server


def _mtls(pki, **kwargs) -> TlsConfig:
    return TlsConfig(root_ca=pki.ca_cert, client_cert=pki.client_cert, client_key=pki.client_key, **kwargs)


def _images() -> np.ndarray:
    return synthetic_arrays(12, seed=9)[0]


def test_tls_client_certificate_and_token_work_end_to_end(secured_server, server, pki):
    with MnistClient(server.target) as plain:  # the same model, served without security
        expected = [p.label for p in plain.classify(_images())]
    with MnistClient(secured_server.target, tls=_mtls(pki), token=TOKEN) as client:
        assert [p.label for p in client.classify(_images(), chunk_size=5)] == expected
        streamed = [p.label for reply in client.classify_stream([_images()[:6], _images()[6:]]) for p in reply]
        assert streamed == expected
        assert client.model_info().name == "mnist"
        assert client.health() == "SERVING"

    async def run_async():
        async with AsyncMnistClient(secured_server.target, tls=_mtls(pki), token=TOKEN) as aclient:
            return [p.label for p in await aclient.classify(_images())]

    assert asyncio.run(run_async()) == expected


def test_the_certificate_name_can_be_overridden(secured_server, pki):
    # The server certificate names localhost and 127.0.0.1; ask for localhost while dialling the IP.
    with MnistClient(secured_server.target, tls=_mtls(pki, server_name="localhost"), token=TOKEN) as client:
        assert len(client.classify(_images()[:2])) == 2


@pytest.mark.parametrize(
    "token, message", [(None, "missing credentials"), ("not-the-right-token-0123456789", "invalid credentials")]
)
def test_a_missing_or_wrong_token_is_unauthenticated(secured_server, pki, token, message):
    with MnistClient(secured_server.target, tls=_mtls(pki), token=token, timeout=10) as client:
        with pytest.raises(ClientError) as info:
            client.classify(_images()[:1])
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert message in info.value.details


WHY = {
    "no client certificate": "the server requires a client certificate (give --tls-cert and --tls-key)",
    "plaintext": "TLS handshake failed: the server speaks TLS, the client plaintext",
    "wrong CA": "TLS handshake failed: the server's certificate is not trusted",
    "rogue client certificate": "the server refused the client certificate",
}


@pytest.mark.parametrize("tls", list(WHY))
def test_without_the_right_certificates_the_call_fails_at_once_saying_why(secured_server, pki, tls):
    config = {
        "no client certificate": TlsConfig(root_ca=pki.ca_cert),
        "plaintext": None,
        "wrong CA": TlsConfig(root_ca=pki.rogue_ca_cert, client_cert=pki.client_cert, client_key=pki.client_key),
        "rogue client certificate": TlsConfig(
            root_ca=pki.ca_cert, client_cert=pki.rogue_client_cert, client_key=pki.rogue_client_key
        ),
    }[tls]
    started = time.monotonic()
    with MnistClient(secured_server.target, tls=config, token=TOKEN, timeout=30) as client:
        with pytest.raises(ClientError) as info:
            client.classify(_images()[:1])
    # Waiting cannot mend a TLS mismatch: no call waits out its deadline for it.
    assert time.monotonic() - started < 10
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert WHY[tls] in info.value.details, info.value.details


def test_the_asyncio_client_says_why_too(secured_server, pki):
    async def run():
        async with AsyncMnistClient(
            secured_server.target, tls=TlsConfig(root_ca=pki.ca_cert), token=TOKEN, timeout=30
        ) as client:
            await client.model_info()

    with pytest.raises(ClientError) as info:
        asyncio.run(run())
    assert WHY["no client certificate"] in info.value.details


def test_a_tls_client_at_a_plaintext_port_is_told_so(server, pki):
    with MnistClient(server.target, tls=TlsConfig(root_ca=pki.ca_cert), timeout=30) as client:
        with pytest.raises(ClientError) as info:
            client.model_info()
    assert "TLS handshake failed: the server does not speak TLS" in info.value.details


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_client.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_cli_takes_certificates_and_a_token_file(secured_server, pki, token_file, tmp_path):
    picture = tmp_path / "digit.png"
    buffer = io.BytesIO()
    Image.fromarray(_images()[0]).save(buffer, format="PNG")
    picture.write_bytes(buffer.getvalue())
    security = [
        "--target",
        secured_server.target,
        "--tls-ca",
        pki.ca_cert,
        "--tls-cert",
        pki.client_cert,
        "--tls-key",
        pki.client_key,
        "--token-file",
        str(token_file),
    ]
    classified = _cli(*security, "classify", str(picture))
    assert classified.returncode == 0, classified.stderr
    assert classified.stdout.startswith(f"{picture}\t")
    assert _cli(*security, "health").returncode == 0
    result_file = tmp_path / "bench.json"
    bench = _cli(
        *security,
        "bench",
        "--requests",
        "30",
        "--warmup",
        "0",
        "--concurrency",
        "2",
        "--quiet",
        "--json",
        str(result_file),
    )
    assert bench.returncode == 0, bench.stderr
    assert json.loads(result_file.read_text())["requests"] == {"ok": 30, "failed": 0, "total": 30}
    refused = _cli(*security[:-2], "classify", str(picture))  # no token
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
    no_certificate = _cli("classify", str(picture), *security[:4], "--timeout", "30")
    assert no_certificate.returncode == 1
    assert (
        f"error: UNAVAILABLE: cannot reach {secured_server.target}: {WHY['no client certificate']}"
        in no_certificate.stderr
    )

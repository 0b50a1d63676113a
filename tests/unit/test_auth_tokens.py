"""Bearer-token rules without sockets: the token file, the verdicts, and constant-time comparison
(every configured token is compared, always on equal-length digests)."""

from __future__ import annotations

import hmac

import grpc
import pytest

from mnist_server import security
from mnist_server.config import AUTH_EXEMPT_DEFAULT, ConfigError, parse_settings
from mnist_server.metrics import ServerMetrics
from tests.support.certs import make_pki

ALICE = "alice-0123456789abcdef"
BOB = "bob-0123456789abcdef+/=="
MONITOR = "monitor-0123456789abcdef"


@pytest.fixture
def interceptor(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# team tokens\n{ALICE}\n\n{BOB}   # rotated in\n{MONITOR} grpc.health.v1.Health\n")
    return security.BearerTokenInterceptor(
        security.TokenVerifier(security.load_tokens(path), AUTH_EXEMPT_DEFAULT), ServerMetrics()
    )


def verdict(interceptor, value=None, service="mnist_serving.v1.Classifier", extra=()):
    metadata = [("user-agent", "test"), *extra] + ([("authorization", value)] if value is not None else [])
    return interceptor.verdict(metadata, service)


def test_valid_tokens_pass_and_scopes_limit_them(interceptor):
    assert verdict(interceptor, f"Bearer {ALICE}") is None
    assert verdict(interceptor, f"bearer {BOB}") is None  # the scheme is case-insensitive (RFC 7235)
    assert verdict(interceptor, f"Bearer {MONITOR}", service="grpc.health.v1.Health") is None
    code, message = verdict(interceptor, f"Bearer {MONITOR}")
    assert code is grpc.StatusCode.PERMISSION_DENIED and "limited to grpc.health.v1.Health" in message


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, security.MISSING),
        (f"Basic {ALICE}", security.MALFORMED),
        ("Bearer", security.MALFORMED),
        (f"Bearer {ALICE} {BOB}", security.MALFORMED),
        ("Bearer ünïcode", security.MALFORMED),
        (f"Bearer {ALICE}x", security.INVALID),
        (f"Bearer {ALICE[:-1]}", security.INVALID),
    ],
)
def test_missing_malformed_and_wrong_tokens_are_unauthenticated(interceptor, value, expected):
    assert verdict(interceptor, value) == (grpc.StatusCode.UNAUTHENTICATED, expected)


def test_two_authorization_headers_are_malformed(interceptor):
    assert verdict(interceptor, f"Bearer {ALICE}", extra=[("authorization", f"Bearer {BOB}")])[1] == security.MALFORMED


def test_exempt_services_need_no_token(interceptor):
    for service in AUTH_EXEMPT_DEFAULT:
        assert verdict(interceptor, None, service=service) is None


@pytest.mark.parametrize("presented", [ALICE, MONITOR, "not-a-token-at-all-but-long", "x"])
def test_every_token_is_compared_on_equal_length_digests(interceptor, presented, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    verdict(interceptor, f"Bearer {presented}")
    assert calls == [(32, 32)] * 3  # no early exit at a match, no length leak


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        ("short\n", "line 1: a token must be at least 16 characters"),
        (f"{ALICE}\n{BOB} mnist_serving.v1.Classifier  # a scope\n", None),
        (f'{ALICE}\nbad"quote-0123456789abcdef\n', "line 2:"),
    ],
)
def test_token_file_rules(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    if message is None:
        assert len(security.load_tokens(path)) == 2
    else:
        with pytest.raises(ConfigError, match=message):
            security.load_tokens(path)


def test_flags_come_from_the_environment_too(tmp_path):
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "tokens").write_text(f"{ALICE}\n")
    env = {
        "MNIST_SERVER_MODEL_DIR": str(tmp_path),
        "MNIST_SERVER_TLS_CERT": pki.server_cert,
        "MNIST_SERVER_TLS_KEY": pki.server_key,
        "MNIST_SERVER_TLS_CLIENT_CA": pki.ca_cert,
        "MNIST_SERVER_AUTH_TOKEN_FILE": str(tmp_path / "tokens"),
        "MNIST_SERVER_AUTH_EXEMPT_SERVICES": "",
        "MNIST_SERVER_MAX_CONCURRENT_RPCS": "8",
        "MNIST_SERVER_MAX_CONCURRENT_STREAMS": "4",
    }
    settings = parse_settings([], env)
    assert (str(settings.tls_cert), str(settings.tls_key), str(settings.tls_client_ca)) == (
        pki.server_cert,
        pki.server_key,
        pki.ca_cert,
    )
    assert settings.auth_token_file == tmp_path / "tokens" and settings.auth_exempt_services == ()
    assert (settings.max_concurrent_rpcs, settings.max_concurrent_streams) == (8, 4)
    defaults = parse_settings(["--model-dir", str(tmp_path)], {})
    assert (defaults.tls_cert, defaults.auth_token_file, defaults.auth_exempt_services) == (
        None,
        None,
        AUTH_EXEMPT_DEFAULT,
    )
    assert (
        defaults.max_concurrent_rpcs,
        defaults.max_concurrent_streams,
        defaults.max_receive_message_bytes,
        defaults.max_images_per_request,
        defaults.max_decoded_pixels,
        defaults.max_decoded_pixels_per_request,
    ) == (512, 1024, 16 * 2**20, 4096, 16 * 2**20, 64 * 2**20)

"""Channel settings: the retry/health service config, limits, TLS and token options."""

from __future__ import annotations

import json

import grpc
import pytest

from mnist_client import ClientError, TlsConfig
from mnist_client.channel import (
    MAX_MESSAGE_BYTES,
    SERVICE,
    auth_metadata,
    channel_options,
    default_target,
    service_config,
)
from mnist_client.errors import code_from_number


def test_retry_policy_retries_unavailable_and_shutdown_cancellations_with_backoff():
    config = json.loads(service_config(retries=3))
    method = config["methodConfig"][0]
    assert method["name"] == [{"service": SERVICE}]
    assert method["waitForReady"] is True
    policy = method["retryPolicy"]
    assert policy["maxAttempts"] == 4
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert policy["backoffMultiplier"] > 1
    initial, maximum = (float(policy[k].rstrip("s")) for k in ("initialBackoff", "maxBackoff"))
    assert 0 < initial < maximum


def test_zero_retries_has_no_retry_policy():
    method = json.loads(service_config(retries=0))["methodConfig"][0]
    assert "retryPolicy" not in method


@pytest.mark.parametrize("retries", [-1, 5])
def test_retries_beyond_what_grpc_allows_are_refused(retries):
    with pytest.raises(ValueError, match="retries must be between 0 and 4"):
        service_config(retries)


def test_health_checking_watches_our_service():
    config = json.loads(service_config(retries=1))
    assert config["healthCheckConfig"] == {"serviceName": SERVICE}
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    plain = json.loads(service_config(retries=1, health_check=False))
    assert "healthCheckConfig" not in plain and "loadBalancingConfig" not in plain


def test_channel_options_set_limits_keepalive_and_tls_name():
    options = dict(channel_options(2, TlsConfig(server_name="mnist.internal"), own_connection=True))
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.keepalive_time_ms"] > 0
    assert options["grpc.ssl_target_name_override"] == "mnist.internal"
    assert options["grpc.use_local_subchannel_pool"] == 1
    assert json.loads(options["grpc.service_config"])["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 3


def test_token_is_sent_as_a_bearer_header():
    assert auth_metadata(" s3cret\n") == (("authorization", "Bearer s3cret"),)
    assert auth_metadata(None) == ()
    with pytest.raises(ValueError):
        auth_metadata("  ")


def test_mutual_tls_needs_both_certificate_and_key():
    with pytest.raises(ValueError, match="both client_cert and client_key"):
        TlsConfig(client_cert=b"cert")


def test_tls_reads_pem_files(tmp_path):
    # Real PEMs are checked end to end in the integration tests; here only that paths are read.
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"not a certificate")
    assert isinstance(TlsConfig(root_ca=ca).credentials(), grpc.ChannelCredentials)


def test_default_target_reads_the_environment(monkeypatch):
    monkeypatch.delenv("MNIST_CLIENT_TARGET", raising=False)
    assert default_target() == "127.0.0.1:8500"
    monkeypatch.setenv("MNIST_CLIENT_TARGET", "mnist:9000")
    assert default_target() == "mnist:9000"


def test_status_numbers_map_back_to_codes():
    assert code_from_number(3) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_from_number(14) is grpc.StatusCode.UNAVAILABLE
    assert code_from_number(999) is grpc.StatusCode.UNKNOWN


def test_client_error_has_code_and_details():
    error = ClientError(grpc.StatusCode.NOT_FOUND, "model 'x' is not served")
    assert error.code is grpc.StatusCode.NOT_FOUND and error.details == "model 'x' is not served"
    assert str(error) == "NOT_FOUND: model 'x' is not served"

"""Settings from flags and MNIST_SERVER_* environment variables, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_server.config import ConfigError, ModelSource, env_name, parse_settings


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "mnist"
    path.mkdir()
    return path


def test_defaults(base):
    s = parse_settings(["--model-dir", str(base)], environ={})
    assert s.models == (ModelSource("mnist", base),) and s.default_model == "mnist"
    assert (s.host, s.port, s.http_port) == ("0.0.0.0", 8500, 8501)
    assert (s.poll_interval_s, s.keep_versions, s.device) == (2.0, 1, "auto")
    assert (s.max_batch_size, s.grace_period_s, s.log_format) == (256, 20.0, "text")
    # chosen from `make bench` (README "Performance"); the LiteRT/TensorFlow switch is measured at load
    assert (s.runtime, s.litert_max_batch_size, s.inline_max_batch_size) == ("auto", None, None)
    fixed = parse_settings(["--model-dir", str(base), "--litert-max-batch-size", "32"], environ={})
    assert fixed.litert_max_batch_size == 32
    assert (
        parse_settings(["--model-dir", str(base), "--litert-max-batch-size", "auto"], environ={}).litert_max_batch_size
        is None
    )
    assert (s.adaptive_batch_window_s, s.max_concurrent_batches) == (0.002, 2)
    assert s.max_images_per_request <= s.max_queue_images


def test_every_flag_reads_its_environment_variable_and_the_flag_wins(base):
    environ = {
        "MNIST_SERVER_MODEL_DIR": str(base),
        "MNIST_SERVER_PORT": "9000",
        "MNIST_SERVER_BATCH_TIMEOUT_MS": "2.5",
        "MNIST_SERVER_DEVICE": "cpu",
        "MNIST_SERVER_LOG_FORMAT": "json",
        "MNIST_SERVER_MAX_BATCH_SIZE": "32",
    }
    s = parse_settings(["--port", "9100"], environ=environ)
    assert s.models[0].base_path == base
    assert s.port == 9100  # flag over environment
    assert s.batch_timeout_s == pytest.approx(0.0025)
    assert (s.device, s.log_format, s.max_batch_size) == ("cpu", "json", 32)


def test_env_name():
    assert env_name("--max-queue-images") == "MNIST_SERVER_MAX_QUEUE_IMAGES"


def test_several_models_from_flags_and_environment(tmp_path, base):
    other = tmp_path / "fashion"
    other.mkdir()
    s = parse_settings(["--model-dir", str(base), "--model", f"fashion={other}"], environ={})
    assert [m.name for m in s.models] == ["mnist", "fashion"] and s.default_model == "mnist"
    s = parse_settings([], environ={"MNIST_SERVER_MODEL": f"a={base},b={other}"})
    assert s.models == (ModelSource("a", base), ModelSource("b", other)) and s.default_model == "a"


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        ([], {}, "no model to serve"),
        (["--model-dir", "/does/not/exist"], {}, "is not a directory"),
        (["--model", "nameonly"], {}, "NAME=PATH"),
        (["--model-dir", "BASE", "--port", "70000"], {}, "--port"),
        (["--model-dir", "BASE", "--device", "tpu"], {}, "--device"),
        (["--model-dir", "BASE", "--max-batch-size", "0"], {}, "--max-batch-size"),
        (["--model-dir", "BASE", "--batch-timeout-ms", "-1"], {}, "--batch-timeout-ms"),
        (["--model-dir", "BASE"], {"MNIST_SERVER_PORT": "eighty"}, "--port"),
    ],
)
def test_invalid_settings_name_the_problem(base, argv, environ, message):
    argv = [str(base) if arg == "BASE" else arg for arg in argv]
    with pytest.raises(ConfigError, match=message):
        parse_settings(argv, environ=environ)


def test_cross_field_checks(base):
    with pytest.raises(ConfigError, match="both 9000"):
        parse_settings(["--model-dir", str(base), "--port", "9000", "--http-port", "9000"], environ={})
    with pytest.raises(ConfigError, match="must not exceed --max-queue-images"):
        parse_settings(
            ["--model-dir", str(base), "--max-images-per-request", "100", "--max-queue-images", "10"], environ={}
        )
    assert parse_settings(["--model-dir", str(base)], environ={}).event_loop == "uvloop"
    assert (
        parse_settings(["--model-dir", str(base)], environ={"MNIST_SERVER_EVENT_LOOP": "asyncio"}).event_loop
        == "asyncio"
    )
    with pytest.raises(ConfigError, match="must not be below --max-decoded-pixels"):
        parse_settings(
            ["--model-dir", str(base), "--max-decoded-pixels", "1000", "--max-decoded-pixels-per-request", "999"],
            environ={},
        )
    with pytest.raises(ConfigError, match="given twice"):
        parse_settings(["--model-dir", str(base), "--model", f"mnist={base}"], environ={})
    with pytest.raises(ConfigError, match="invalid"):
        parse_settings(["--model", f"bad/name={base}"], environ={})


def test_settings_are_frozen(base):
    s = parse_settings(["--model-dir", str(base)], environ={})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]

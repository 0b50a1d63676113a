"""The CLI's argument handling (commands that reach a real server are in tests/integration; the in-process
server of tests/unit/conftest.py answers the one here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_client.cli import build_parser, main


def test_target_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("MNIST_CLIENT_TARGET", "mnist.internal:9500")
    assert build_parser().parse_args(["health"]).target == "mnist.internal:9500"
    monkeypatch.delenv("MNIST_CLIENT_TARGET")
    assert build_parser().parse_args(["health"]).target == "127.0.0.1:8500"


def test_bench_defaults():
    args = build_parser().parse_args(["bench"])
    assert (args.concurrency, args.batch, args.rate, args.stream) == (8, 1, None, False)
    assert args.duration is None and args.requests is None and args.processes == 1


def test_bench_takes_duration_or_requests_not_both(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["bench", "--duration", "1", "--requests", "5"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_classify_says_what_to_give(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--target", "127.0.0.1:9", "classify"])
    assert info.value.code == 2
    assert "give image FILEs (PNG/JPEG), or --idx IMAGES_FILE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--target", "127.0.0.1:9", "classify", "a.png", "--idx", str(tmp_path / "x.gz")])
    assert info.value.code == 2
    assert "give image FILEs or --idx, not both" in capsys.readouterr().err


def test_connection_options_also_work_after_the_command(monkeypatch):
    monkeypatch.setenv("MNIST_CLIENT_TARGET", "from.env:1")
    after = build_parser().parse_args(
        [
            "classify",
            "--target",
            "mnist:9",
            "--timeout",
            "3",
            "--retries",
            "0",
            "--model",
            "fashion-mnist",
            "--tls-ca",
            "ca.pem",
            "a.png",
        ]
    )
    assert (after.target, after.timeout, after.retries, after.model) == ("mnist:9", 3.0, 0, "fashion-mnist")
    assert str(after.tls_ca) == "ca.pem"
    before = build_parser().parse_args(["--target", "mnist:9", "--timeout", "3", "health", "--wait"])
    assert (before.target, before.timeout, before.wait) == ("mnist:9", 3.0, True)
    neither = build_parser().parse_args(["info"])  # the defaults and $MNIST_CLIENT_TARGET still hold
    assert (neither.target, neither.timeout, neither.tls, neither.token_file) == ("from.env:1", 10.0, False, None)
    assert build_parser().parse_args(["classify", "--version", "3", "a.png"]).version == 3  # the model's


def test_version_names_the_client_and_the_api(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == "mnist-client 0.1.0 (API mnist_serving.v1)"


def test_bad_settings_exit_1_with_a_message(capsys):
    assert main(["--retries", "9", "health"]) == 1
    assert "retries must be between 0 and 4" in capsys.readouterr().err
    assert main(["bench", "--concurrency", "0"]) == 1
    assert "concurrency must be at least 1" in capsys.readouterr().err


def test_a_missing_token_file_is_reported(capsys, tmp_path):
    assert main(["--token-file", str(tmp_path / "missing"), "health"]) == 1
    assert "missing" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_cli_quietly(server):
    """`mnist-client info | head -1`: the reader closes the pipe; the CLI stops without a traceback or
    an `error: [Errno 32] Broken pipe` (here the pipe is closed before the CLI writes at all)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mnist_client.cli", "--target", server.target, "info"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, "")

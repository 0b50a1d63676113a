"""The CLI's argument handling (commands that reach a server are in tests/integration)."""
from __future__ import annotations

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


def test_classify_needs_files_or_idx_but_not_both(capsys, tmp_path):
    for argv in (["classify"], ["classify", "a.png", "--idx", str(tmp_path / "x.gz")]):
        with pytest.raises(SystemExit) as info:
            main(["--target", "127.0.0.1:9", *argv])
        assert info.value.code == 2
    assert "give image FILEs or --idx" in capsys.readouterr().err


def test_bad_settings_exit_1_with_a_message(capsys):
    assert main(["--retries", "9", "health"]) == 1
    assert "retries must be between 0 and 4" in capsys.readouterr().err
    assert main(["bench", "--concurrency", "0"]) == 1
    assert "concurrency must be at least 1" in capsys.readouterr().err


def test_a_missing_token_file_is_reported(capsys, tmp_path):
    assert main(["--token-file", str(tmp_path / "missing"), "health"]) == 1
    assert "missing" in capsys.readouterr().err

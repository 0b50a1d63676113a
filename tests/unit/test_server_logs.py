"""--log-format json: one JSON object per line, exceptions included."""

from __future__ import annotations

import json
import logging

from mnist_server.logs import JsonFormatter


def test_json_lines_carry_level_logger_message_and_exception():
    formatter = JsonFormatter()
    record = logging.LogRecord(
        "mnist_server.repository", logging.INFO, __file__, 1, "model %s: version %d available", ("mnist", 3), None
    )
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "INFO" and entry["logger"] == "mnist_server.repository"
    assert entry["message"] == "model mnist: version 3 available"
    assert entry["time"].endswith("Z")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]

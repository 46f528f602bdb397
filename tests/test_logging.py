"""Log hygiene: requests refused by aiohttp's parser leave one short line, no traceback."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import LineTooLong

from server.serve import MalformedRequestFilter


def record_of(error: Exception) -> logging.LogRecord:
    try:
        raise error
    except Exception:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("127.0.0.1",),
        exc_info,
    )


def test_parser_errors_become_one_line() -> None:
    record = record_of(LineTooLong(b"aaaa", "8190"))
    assert MalformedRequestFilter().filter(record)
    assert record.exc_info is None
    assert record.levelno == logging.WARNING
    assert (
        record.getMessage()
        == "Error handling request from 127.0.0.1: LineTooLong (400)"
    )


def test_server_errors_keep_their_traceback() -> None:
    record = record_of(RuntimeError("bug"))
    assert MalformedRequestFilter().filter(record)
    assert record.exc_info is not None and record.levelno == logging.ERROR

"""Secrets never reach the logs: registered values, presigned URLs and auth headers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bridge.logs import setup_logging
from bridge.redact import Secret, redact


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(fmt: str = "text") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(fmt, "debug", stream=stream)
    return stream


def test_registered_secret_masked_in_message_args_and_exceptions() -> None:
    token = Secret("eyJhbGciOiJSUzI1NiJ9.very-secret-id-token")
    stream = capture()
    log = logging.getLogger("test.redact")
    log.info("calling with %s", token.reveal())
    try:
        raise RuntimeError(f"refused token {token.reveal()}")
    except RuntimeError:
        log.exception("failed")
    out = stream.getvalue()
    assert "very-secret-id-token" not in out
    assert "calling with ***" in out
    assert "refused token ***" in out


def test_presigned_url_parts_masked() -> None:
    url = (
        "wss://v-1.kinesisvideo.us-east-1.amazonaws.com/?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=ASIAXVAD7YUY/20240229/us-east-1/kinesisvideo/aws4_request"
        "&X-Amz-Security-Token=FwoGZXIvYXdzEJr&X-Amz-Signature=93e1163afa4f2e7c"
    )
    out = redact(url)
    assert "FwoGZXIvYXdzEJr" not in out
    assert "93e1163afa4f2e7c" not in out
    assert "ASIAXVAD7YUY" not in out
    assert "v-1.kinesisvideo" in out  # the host stays, for debugging


def test_s3_url_and_headers_masked() -> None:
    text = (
        "GET https://b.s3.amazonaws.com/v.mp4?AWSAccessKeyId=AKIAX&Expires=1&Signature=o3YZ= "
        "headers {'Authorization': 'Bearer abc.def.ghi', 'x-skybell-user-api-key': 'adb4424f-09cf'}"
    )
    out = redact(text)
    for leaked in ("AKIAX", "o3YZ", "abc.def.ghi", "adb4424f-09cf"):
        assert leaked not in out


def test_json_log_format_is_redacted() -> None:
    Secret("json-format-secret-value")
    stream = capture("json")
    logging.getLogger("test.json").warning("value=%s", "json-format-secret-value")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["level"] == "warning"
    assert entry["message"] == "value=***"


def test_short_values_not_registered() -> None:
    Secret("abc")
    assert redact("abc and abcdef") == "abc and abcdef"

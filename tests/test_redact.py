"""Secrets never reach the logs: registered values, presigned URLs and auth headers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bridge.kvs.presign import presign_wss, url_param
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


KVS_ENDPOINT = "wss://v-1.kinesisvideo.us-east-1.amazonaws.com"
CHANNEL = "arn:aws:kinesisvideo:us-east-1:123456789012:channel/front-door/1700000000000"
ACCESS_KEY = "ASIAXVAD7YUYFINDING10"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFINDING10KEY"
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDFINDING10TOKEN"


@pytest.mark.parametrize(("fmt", "minute"), [("text", 1), ("json", 2)])
def test_finding_10_botocore_signature_redacted_at_debug(fmt: str, minute: int) -> None:
    stream = capture(fmt)  # the bridge's own handler, at log.level = debug
    # A signing time of its own, so no earlier test has registered this very signature.
    now = datetime(2024, 2, 29, 18, minute, tzinfo=UTC)
    url = presign_wss(
        KVS_ENDPOINT,
        CHANNEL,
        "viewer-1",
        "us-east-1",
        ACCESS_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        now=now,
    )
    out = stream.getvalue()
    # botocore did log its signing steps, so the test proves redaction, not silence.
    assert "botocore.auth" in out
    assert "Signature:" in out
    assert "CanonicalRequest:" in out
    signature = url_param(url, "X-Amz-Signature")
    assert signature
    for leaked in (signature, SECRET_KEY, SESSION_TOKEN, quote(SESSION_TOKEN, safe=""), ACCESS_KEY):
        assert leaked not in out


def test_finding_10_botocore_header_signing_redacted_at_debug() -> None:
    # S3 uploads sign headers instead of the URL: the canonical request carries the session
    # token as a header line, and botocore's request repr shows it (and the signature) as bytes.
    stream = capture()
    token = "IQoJb3JpZ2luX2VjEFINDING10HEADERTOKEN"
    request = AWSRequest(method="PUT", url="https://clips.s3.amazonaws.com/a.mp4", data=b"x")
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    prepared.headers = {k: v.encode() for k, v in prepared.headers.items()}
    logging.getLogger("botocore.endpoint").debug("Sending http request: %s", prepared)
    out = stream.getvalue()
    assert "Sending http request" in out
    assert "Signature:" in out
    signature = str(request.headers["Authorization"]).rsplit("Signature=", 1)[1]
    for leaked in (signature, token, SECRET_KEY, ACCESS_KEY):
        assert leaked not in out

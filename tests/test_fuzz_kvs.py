"""Fuzzing the KVS signaling wire format (issue 12): whatever the socket carries, decoding gives a
message, None (noise) or, on the service's side, a ValueError, and never anything else."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.kvs.messages import (
    GO_AWAY,
    ICE_CANDIDATE,
    MAX_PAYLOAD_B64,
    RECONNECT_ICE_SERVER,
    SDP_ANSWER,
    SDP_OFFER,
    STATUS_RESPONSE,
    GoAwayNotice,
    Malformed,
    OutgoingAction,
    ReconnectIceServer,
    RemoteCandidate,
    SdpAnswer,
    SdpOffer,
    StatusResponse,
    decode_action,
    decode_received,
)

# A frame is at most 64 KB on the viewer's socket; these stay well inside that.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE_TYPES = [
    SDP_OFFER,
    SDP_ANSWER,
    ICE_CANDIDATE,
    STATUS_RESPONSE,
    GO_AWAY,
    RECONNECT_ICE_SERVER,
]
RECEIVED = (
    SdpOffer,
    SdpAnswer,
    RemoteCandidate,
    StatusResponse,
    GoAwayNotice,
    ReconnectIceServer,
    Malformed,
)

# Any JSON value, a few levels deep.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


# A payload field: garbage text, base64 of garbage, base64 of any JSON, or base64 of a
# payload of the right shape with wrong-typed fields; padding sometimes stripped.
payloads = st.one_of(
    json_values,
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    json_values.map(b64),
    st.fixed_dictionaries(
        {},
        optional={
            "sdp": json_values,
            "type": json_values,
            "candidate": json_values,
            "sdpMid": json_values,
            "sdpMLineIndex": json_values,
        },
    ).map(b64),
).flatmap(lambda p: st.sampled_from([p, p.rstrip("=")]) if isinstance(p, str) else st.just(p))

# Frames with the right envelope and anything inside it.
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "messageType": st.sampled_from(MESSAGE_TYPES) | json_values,
        "messagePayload": payloads,
        "senderClientId": json_values,
        "statusResponse": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "correlationId": json_values,
                "errorType": json_values,
                "statusCode": json_values,
                "description": json_values,
            },
        ),
    },
).map(lambda d: json.dumps(d))

frames = st.one_of(
    st.text(max_size=500), st.binary(max_size=500), envelopes, json_values.map(json.dumps)
)


def check_received(result: object) -> None:
    assert result is None or isinstance(result, RECEIVED)
    if isinstance(result, SdpOffer | SdpAnswer):
        assert isinstance(result.sdp, str)
        assert result.sdp
    if isinstance(result, RemoteCandidate):
        assert isinstance(result.candidate, str)
        assert result.sdp_mline_index is None or type(result.sdp_mline_index) is int


@FUZZ
@given(frames)
def test_fuzz_decode_received_gives_a_message_or_none(frame: str | bytes) -> None:
    check_received(decode_received(frame))


@FUZZ
@given(st.sampled_from(["[", '{"a":']), st.integers(min_value=500, max_value=60_000))
def test_fuzz_deeply_nested_json_is_noise_not_a_crash(opening: str, depth: int) -> None:
    # Found by this fuzzing: json.loads raises RecursionError (not ValueError) on deep nesting,
    # which fits in one 64 KB frame and ended the viewer's reader task.
    assert decode_received(opening * depth) is None
    kind = SDP_OFFER
    nested = base64.b64encode((opening * depth).encode()).decode()
    frame = json.dumps({"messageType": kind, "messagePayload": nested})
    result = decode_received(frame)
    assert isinstance(result, Malformed)
    assert result.message_type == kind


@FUZZ
@given(
    st.sampled_from([SDP_OFFER, SDP_ANSWER]),
    st.text(min_size=1, max_size=300),
    st.none() | st.text(max_size=30),
)
def test_fuzz_well_formed_sdp_round_trips(kind: str, sdp: str, sender: str | None) -> None:
    message: dict[str, Any] = {"messageType": kind, "messagePayload": b64({"sdp": sdp})}
    if sender is not None:
        message["senderClientId"] = sender
    result = decode_received(json.dumps(message))
    assert isinstance(result, SdpOffer if kind == SDP_OFFER else SdpAnswer)
    assert (result.sdp, result.sender_client_id) == (sdp, sender)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=500),
        st.binary(max_size=500),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {},
            optional={
                "action": st.sampled_from([SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE]) | json_values,
                "messagePayload": payloads | st.just("A" * (MAX_PAYLOAD_B64 + 1)),
                "recipientClientId": json_values,
                "correlationId": json_values,
            },
        ).map(json.dumps),
        st.sampled_from(["[", '{"a":']).map(lambda s: s * 5000),
    )
)
def test_fuzz_decode_action_gives_an_action_or_value_error(frame: str | bytes) -> None:
    try:
        action = decode_action(frame)
    except ValueError as err:
        reason = str(err)  # what the simulated service sends back
    else:
        reason = ""
        assert isinstance(action, OutgoingAction)
        assert action.action in (SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE)
        assert 0 < len(action.message_payload) <= MAX_PAYLOAD_B64
        return
    assert reason

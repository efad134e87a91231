"""Reading a viewer's SDP offer: which H.264 entry suits the doorbell, and whether audio fits.

The bridge relays the doorbell's H.264 as is, so the answer must name an H.264 payload type the
viewer offered, ideally one whose profile covers the doorbell's (taken from the live SPS). aiortc
negotiates by matching our codec preferences against the offer, so the choice made here is a
codec *capability* to prefer; aiortc then answers with the viewer's first entry of that profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import H264Profile, SessionDescription, parse_h264_profile_level_id

from bridge.media import aiortc_patch
from bridge.media.packet import h264_profile

from .errors import OfferError

__all__ = [
    "MAX_SDP",
    "AudioChoice",
    "Offer",
    "VideoChoice",
    "choose_audio",
    "choose_video",
    "parse_offer",
]

# A browser offer with audio, video and data is 3-10 KB; anything far larger is not an offer.
# Capped before aiortc parses it: each m-line becomes a transceiver with its own DTLS and ICE
# state, and 20 offers of 300 video lines once took the process from 332 MB to about 1 GB.
MAX_SDP = 16 * 1024
# What one viewer can use: the doorbell has one picture and one sound; a data channel is allowed
# because browsers that opened one before offering add it.
_MAX_LINES = {"video": 1, "audio": 1, "application": 1}
_RECEIVING = ("recvonly", "sendrecv")
_P = H264Profile
# Which viewer profiles decode a doorbell profile, best first. A High decoder handles Main
# and Constrained Baseline streams, so a superset is the next best thing to an exact match.
_DECODERS: dict[H264Profile, tuple[H264Profile, ...]] = {
    _P.PROFILE_CONSTRAINED_BASELINE: (
        _P.PROFILE_CONSTRAINED_BASELINE,
        _P.PROFILE_BASELINE,
        _P.PROFILE_MAIN,
        _P.PROFILE_HIGH,
    ),
    _P.PROFILE_BASELINE: (_P.PROFILE_BASELINE,),
    _P.PROFILE_MAIN: (_P.PROFILE_MAIN, _P.PROFILE_HIGH),
    _P.PROFILE_CONSTRAINED_HIGH: (_P.PROFILE_HIGH,),
    _P.PROFILE_HIGH: (_P.PROFILE_HIGH,),
}
# With no covering profile offered, the most capable one is the best bet: browsers decode
# through FFmpeg or the platform, which in practice ignore the negotiated profile.
_FALLBACK = (_P.PROFILE_HIGH, _P.PROFILE_MAIN, _P.PROFILE_CONSTRAINED_BASELINE, _P.PROFILE_BASELINE)
_AUDIO_MIME = {"opus": "audio/opus", "pcmu": "audio/pcmu", "pcma": "audio/pcma"}


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed offer: the viewer's usable H.264 entries and its audio codecs, in offer order."""

    sdp: str
    h264: tuple[RTCRtpCodecParameters, ...]  # packetization-mode=1 only
    audio: tuple[RTCRtpCodecParameters, ...]  # empty when the offer receives no audio
    sends_audio: bool = False  # the viewer offers to send audio (push-to-talk)


@dataclass(frozen=True, slots=True)
class VideoChoice:
    """The capability to prefer and what the viewer will see in the answer."""

    capability: RTCRtpCodecCapability
    payload_type: int
    profile_level_id: str  # the viewer's entry
    source_profile: str  # the doorbell's, e.g. "high 640028"
    exact: bool  # the viewer's profile decodes the doorbell's by the book


@dataclass(frozen=True, slots=True)
class AudioChoice:
    """The audio codec to relay (None: no audio), and why."""

    codec: str | None
    capability: RTCRtpCodecCapability | None
    note: str


def parse_offer(sdp: str) -> Offer:
    """Parse an offer; OfferError (a 400) unless it can receive H.264 with packetization-mode=1."""
    if not sdp.strip():
        raise OfferError("empty SDP offer")
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > MAX_SDP:
        raise OfferError(f"SDP offer too large ({size} bytes; the limit is {MAX_SDP})")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("not an SDP offer: it must start with v=0")
    _check_media_lines(sdp)
    try:
        description = SessionDescription.parse(sdp)
    except (
        ValueError,
        KeyError,
        IndexError,
        AssertionError,
        TypeError,
        AttributeError,  # a line aiortc's regular expressions do not match
        StopIteration,  # an a=rtpmap/fmtp for a payload type the m-line does not list
    ) as err:
        raise OfferError(f"malformed SDP offer: {str(err)[:120] or type(err).__name__}") from err
    for media in description.media:
        # What aiortc would refuse later, checked now: by then the doorbell would be awake.
        if not (media.ice and media.ice.usernameFragment and media.ice.password):
            raise OfferError("the offer lacks ICE credentials (a=ice-ufrag / a=ice-pwd)")
        if not (media.dtls and media.dtls.fingerprints):
            raise OfferError("the offer lacks DTLS parameters (a=fingerprint, a=setup)")
        if media.kind in ("audio", "video") and not media.rtcp_mux:
            raise OfferError("the offer must use RTCP multiplexing (a=rtcp-mux)")
    videos = [m for m in description.media if m.kind == "video"]
    if not videos:
        raise OfferError("the offer has no video m-line")
    video = videos[0]
    if video.direction not in (*_RECEIVING, None):
        raise OfferError(f"the offer's video is {video.direction}; it must receive video")
    h264 = [c for c in video.rtp.codecs if c.mimeType.lower() == "video/h264"]
    if not h264:
        names = sorted({c.mimeType.split("/")[-1] for c in video.rtp.codecs})
        raise OfferError(
            "the offer has no H.264 video; the doorbell's H.264 is relayed without "
            f"re-encoding, so the viewer must accept H.264 (offered: {', '.join(names) or 'none'})"
        )
    usable = tuple(c for c in h264 if str(c.parameters.get("packetization-mode", "0")) == "1")
    if not usable:
        raise OfferError("the offer's H.264 lacks packetization-mode=1, which the bridge sends")
    audios = [m for m in description.media if m.kind == "audio"]
    audio = audios[0].rtp.codecs if audios and audios[0].direction in (*_RECEIVING, None) else []
    # No direction attribute means sendrecv (RFC 4566), but only a browser that asked for it
    # explicitly (the page's talk) gets its audio read: others never meant to send any.
    sends = bool(audios) and audios[0].direction in ("sendrecv", "sendonly")
    return Offer(sdp=sdp, h264=usable, audio=tuple(audio), sends_audio=sends)


def _check_media_lines(sdp: str) -> None:
    """Refuse offers with more m-lines than a viewer can use, before aiortc parses them."""
    counts: dict[str, int] = {}
    for line in sdp.splitlines():
        if not line.startswith("m="):
            continue
        kind = line[2:].split(" ", 1)[0]
        if kind not in _MAX_LINES:
            raise OfferError(f"the offer has an unsupported {kind[:20]!r} m-line")
        counts[kind] = counts.get(kind, 0) + 1
        if counts[kind] > _MAX_LINES[kind]:
            raise OfferError(
                f"the offer has more than {_MAX_LINES[kind]} {kind} m-line; the bridge sends "
                "one video, one audio and at most one data section"
            )


def _profile(profile_level_id: object) -> H264Profile | None:
    try:
        return parse_h264_profile_level_id(str(profile_level_id))[0]
    except ValueError:
        return None


def choose_video(offer: Offer, sps: bytes | None) -> VideoChoice:
    """Pick the viewer's H.264 entry that best decodes the doorbell's profile (from its SPS)."""
    aiortc_patch.install()  # registers the Main and High capabilities
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    local: dict[H264Profile, RTCRtpCodecCapability] = {}
    for cap in capabilities:
        profile = _profile(cap.parameters.get("profile-level-id"))
        if cap.mimeType.lower() == "video/h264" and profile is not None:
            local.setdefault(profile, cap)
    # Without a profile-level-id a viewer means Constrained Baseline 3.1 (RFC 6184 default).
    offered = [(c, _profile(c.parameters.get("profile-level-id", "42e01f"))) for c in offer.h264]
    source = "unknown"
    wanted: tuple[H264Profile, ...] = ()
    if sps is not None:
        try:
            name, plid = h264_profile(sps)
        except ValueError:
            name, plid = "unknown", ""
        source = f"{name} {plid}".strip()
        source_profile = _profile(plid)
        wanted = _DECODERS.get(source_profile, ()) if source_profile is not None else ()
    for exact, ranking in ((True, wanted), (False, _FALLBACK)):
        for profile in ranking:
            if profile not in local:
                continue
            for codec, codec_profile in offered:
                if codec_profile is profile:
                    return VideoChoice(
                        capability=local[profile],
                        payload_type=codec.payloadType or 0,
                        profile_level_id=str(codec.parameters.get("profile-level-id", "42e01f")),
                        source_profile=source,
                        exact=exact,
                    )
    # Only profiles aiortc cannot answer (Constrained High, High 4:4:4) were offered.
    offered_ids = ", ".join(str(c.parameters.get("profile-level-id", "?")) for c in offer.h264)
    raise OfferError(
        f"no H.264 profile in the offer that the bridge can answer (offered: {offered_ids})"
    )


def choose_audio(offer: Offer, source_codec: str | None) -> AudioChoice:
    """The doorbell's audio codec if the viewer offered it; audio is never transcoded here."""
    if source_codec is None:
        return AudioChoice(None, None, "the doorbell sends no audio")
    if not offer.audio:
        return AudioChoice(None, None, "the viewer does not receive audio")
    mime = _AUDIO_MIME.get(source_codec)
    if mime is None:
        return AudioChoice(None, None, f"doorbell audio {source_codec} cannot be relayed")
    if not any(c.mimeType.lower() == mime for c in offer.audio):
        return AudioChoice(None, None, f"the viewer did not offer {source_codec}; no transcoding")
    capability = next(
        c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == mime
    )
    return AudioChoice(source_codec, capability, f"relaying {source_codec}")

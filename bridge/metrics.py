"""Prometheus metric families built from the parts' own ``stats()``, at scrape time.

Nothing here runs on the media or event paths: the hub, the bus, the rule engine and the recorder
already count what they do (``StreamStats``, ``EventStats``, ``AutomationStats``,
``RecorderStats``), and a scrape reads those once into a ``Snapshot`` and turns it into families.
Counters that the parts keep since start are exposed as Prometheus counters; a part that restarts
(the whole bridge) starts them from zero, which Prometheus reads as a counter reset.

Every name starts with ``skybell_bridge_``; labels are bounded: stream names, the outputs, event
sources and types (fixed lists), rule names from the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # only the parts' stats shapes; their code is not needed to build families
    from bridge.automation.engine import AutomationStats
    from bridge.events.service import EventStats
    from bridge.media.histogram import HistogramStats
    from bridge.media.hub import StreamStats
    from bridge.publish import PublishStats
    from bridge.record.recorder import RecorderStats

__all__ = ["OUTPUTS", "PREFIX", "STATES", "Snapshot", "SnapshotCollector", "families"]

PREFIX: Final = "skybell_bridge_"
# Hub subscribers by output; always given (0 included) so a dashboard's series never vanish.
OUTPUTS: Final = ("rtsp", "hls", "mjpeg", "webrtc", "recorder")
STATES: Final = ("idle", "starting", "live", "reconnecting", "error")


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read from the parts; None for a part the bridge does not run."""

    streams: Mapping[str, StreamStats] = field(default_factory=dict)
    events: EventStats | None = None
    automation: AutomationStats | None = None
    recorder: RecorderStats | None = None
    s3: Mapping[str, int] | None = None  # clips per upload state: no, pending, done, failed
    mqtt: Mapping[str, float] | None = None  # connected (0/1), dropped, queued
    # (stream name, one publish target's stats), configured and ad-hoc pushes alike.
    publish: Sequence[tuple[str, PublishStats]] = ()


class SnapshotCollector(Collector):
    """The families of one snapshot, for ``generate_latest``."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Every family of the snapshot."""
        return families(self._snapshot)


def families(snap: Snapshot) -> Iterator[Metric]:
    """The bridge's metric families for one scrape."""
    yield from _streams(snap.streams)
    if snap.publish:
        yield from _publish(snap.publish)
    if snap.events is not None:
        yield from _events(snap.events)
    if snap.automation is not None:
        yield from _automation(snap.automation)
    if snap.recorder is not None:
        yield from _recorder(snap.recorder)
    if snap.s3 is not None:
        yield from _s3(snap.s3)
    if snap.mqtt is not None:
        yield from _mqtt(snap.mqtt)


def _streams(streams: Mapping[str, StreamStats]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        PREFIX + "stream_state",
        "1 for the stream's current state (idle, starting, live, reconnecting, error), else 0",
        labels=["stream", "state"],
    )
    reconnects = CounterMetricFamily(
        PREFIX + "stream_reconnects",
        "Live sessions that ended and were opened again",
        labels=["stream"],
    )
    bytes_in = CounterMetricFamily(
        PREFIX + "stream_received_bytes",
        "Encoded media bytes received from the doorbell",
        labels=["stream"],
    )
    viewers = GaugeMetricFamily(
        PREFIX + "stream_viewers",
        "Consumers of the stream per output (an HLS packager or the MJPEG decoder counts once)",
        labels=["stream", "output"],
    )
    keyframes = CounterMetricFamily(
        PREFIX + "stream_keyframe_requests",
        "Keyframe requests sent to the doorbell, by kind (pli, fir)",
        labels=["stream", "kind"],
    )
    answered = CounterMetricFamily(
        PREFIX + "stream_keyframe_requests_answered",
        "Keyframe requests answered by a keyframe",
        labels=["stream"],
    )
    first_frame = HistogramMetricFamily(
        PREFIX + "stream_first_frame_seconds",
        "Seconds from asking the cloud for a live call to the call's first picture",
        labels=["stream"],
    )
    for name, stats in sorted(streams.items()):
        for each in (*STATES, *([stats["state"]] if stats["state"] not in STATES else [])):
            state.add_metric([name, each], 1.0 if each == stats["state"] else 0.0)
        reconnects.add_metric([name], stats["reconnects"])
        bytes_in.add_metric([name], stats["bytes_in"])
        seen = stats["viewers"]
        for output in (*OUTPUTS, *sorted(set(seen) - set(OUTPUTS))):
            viewers.add_metric([name, output], seen.get(output, 0))
        requests = stats["keyframe_requests"]
        keyframes.add_metric([name, "pli"], requests["pli"])
        keyframes.add_metric([name, "fir"], requests["fir"])
        answered.add_metric([name], requests["answered"])
        first_frame.add_metric([name], *_buckets(stats["first_frame"]))
    yield from (state, reconnects, bytes_in, viewers, keyframes, answered, first_frame)


def _publish(targets: Sequence[tuple[str, PublishStats]]) -> Iterator[Metric]:
    # The URL label is the masked one: a password never reaches a time series.
    labels = ["stream", "url"]
    state = GaugeMetricFamily(
        PREFIX + "publish_state",
        "1 for the publish target's current state (waiting, connecting, publishing, unavailable)",
        labels=[*labels, "state"],
    )
    sent = CounterMetricFamily(
        PREFIX + "publish_sent_bytes", "Encoded bytes pushed to the target", labels=labels
    )
    reconnects = CounterMetricFamily(
        PREFIX + "publish_reconnects",
        "Pushes that failed (refused, unreachable, stalled) and were retried",
        labels=labels,
    )
    dropped = CounterMetricFamily(
        PREFIX + "publish_dropped_packets",
        "Packets skipped, whole GOPs at a time, while the target fell behind",
        labels=labels,
    )
    for name, stats in targets:
        key = [name, stats["url"]]
        for each in ("waiting", "connecting", "publishing", "unavailable"):
            state.add_metric([*key, each], 1.0 if each == stats["state"] else 0.0)
        sent.add_metric(key, stats["bytes"])
        reconnects.add_metric(key, stats["reconnects"])
        dropped.add_metric(key, stats["dropped"])
    yield from (state, sent, reconnects, dropped)


def _buckets(hist: HistogramStats) -> tuple[list[tuple[str, float]], float]:
    """Cumulative buckets as Prometheus wants them (``+Inf`` last), and the sum."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip([*hist["bounds"], float("inf")], hist["counts"], strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
    return out, hist["sum"]


def _events(stats: EventStats) -> Iterator[Metric]:
    bus = stats["bus"]
    reports = CounterMetricFamily(
        PREFIX + "events",
        "Event reports received, by source and type (duplicates across sources included)",
        labels=["source", "type"],
    )
    for source, types in sorted(bus["by_source"].items()):
        for kind, count in sorted(types.items()):
            reports.add_metric([source, kind], count)
    yield reports
    yield CounterMetricFamily(
        PREFIX + "event_duplicates",
        "Event reports dropped as duplicates of an event already delivered",
        value=bus["duplicates"],
    )
    dropped = CounterMetricFamily(
        PREFIX + "event_subscriber_dropped",
        "Deliveries dropped from a full subscriber queue (a slow subscriber)",
        value=sum(sub["dropped"] for sub in bus["subscribers"]),
    )
    yield dropped


def _automation(stats: AutomationStats) -> Iterator[Metric]:
    fired = CounterMetricFamily(PREFIX + "rule_fired", "Times a rule fired", labels=["rule"])
    skipped = CounterMetricFamily(
        PREFIX + "rule_skipped",
        "Events a rule matched but did not act on, by reason (window, cooldown)",
        labels=["rule", "reason"],
    )
    actions = CounterMetricFamily(
        PREFIX + "rule_actions",
        "Rule actions finished, by outcome (ok, failed)",
        labels=["rule", "outcome"],
    )
    for rule in stats["rules"]:
        name = rule["name"]
        fired.add_metric([name], rule["fired"])
        skipped.add_metric([name, "window"], rule["skipped"]["window"])
        skipped.add_metric([name, "cooldown"], rule["skipped"]["cooldown"])
        actions.add_metric([name, "ok"], rule["outcomes"]["ok"])
        actions.add_metric([name, "failed"], rule["outcomes"]["failed"])
    yield from (fired, skipped, actions)
    budget = stats["switchbot"]
    if budget is not None:
        yield GaugeMetricFamily(
            PREFIX + "switchbot_calls_remaining",
            "SwitchBot API calls left today (UTC) before the daily limit",
            value=budget["remaining"],
        )
        yield GaugeMetricFamily(
            PREFIX + "switchbot_calls_used",
            "SwitchBot API calls made today (UTC)",
            value=budget["used"],
        )


def _recorder(stats: RecorderStats) -> Iterator[Metric]:
    yield CounterMetricFamily(
        PREFIX + "clips_recorded", "Clips recorded and playable", value=stats["recorded"]
    )
    yield CounterMetricFamily(
        PREFIX + "clips_failed",
        "Clips that failed or recorded nothing (no video came)",
        value=stats["failed"],
    )
    yield CounterMetricFamily(
        PREFIX + "clips_recorded_bytes", "Bytes of the clips recorded", value=stats["bytes"]
    )
    yield GaugeMetricFamily(
        PREFIX + "clips_recording", "Clips being recorded now", value=stats["recording"]
    )


def _s3(counts: Mapping[str, int]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        PREFIX + "s3_queue_depth",
        "Clips waiting for their S3 upload (retries included)",
        value=counts.get("pending", 0),
    )
    by_state = GaugeMetricFamily(
        PREFIX + "s3_clips",
        "Indexed clips by upload state (no, pending, done, failed)",
        labels=["state"],
    )
    for state, count in sorted(counts.items()):
        by_state.add_metric([state], count)
    yield by_state


def _mqtt(stats: Mapping[str, float]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        PREFIX + "mqtt_connected",
        "1 while the MQTT broker is connected",
        value=stats.get("connected", 0),
    )
    yield CounterMetricFamily(
        PREFIX + "mqtt_dropped_messages",
        "MQTT messages dropped from the full outgoing queue (oldest first)",
        value=stats.get("dropped", 0),
    )
    yield GaugeMetricFamily(
        PREFIX + "mqtt_queued_messages",
        "MQTT messages waiting for the broker",
        value=stats.get("queued", 0),
    )
    yield GaugeMetricFamily(
        PREFIX + "mqtt_claim_conflicts",
        "Doorbells of this bridge that another bridge instance claims too (a config error)",
        value=stats.get("claim_conflicts", 0),
    )

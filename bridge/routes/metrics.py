"""``GET /metrics``: the bridge's figures in the Prometheus text format (or OpenMetrics, when the
scraper's ``Accept`` asks for it).

Auth is the API's (the Basic middleware), plus ``server.metrics_token`` as a bearer token that
grants this path only (see ``bridge.routes.auth``). Each scrape reads the parts that are
running: the hub's streams, the event service, the rule engine, the recorder, the S3 uploader
(its queue is counted in SQLite, off the event loop) and, when MQTT runs, ``MQTT_STATS``. The
process figures come from prometheus_client's own collectors, on a registry of this app's
(never the global one: several bridges in one test process would collide there).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bridge.metrics import Snapshot, SnapshotCollector
from bridge.routes.automation import RULES
from bridge.routes.clips import RECORDER, UPLOADER
from bridge.routes.common import HUB, MQTT_STATS
from bridge.routes.events import EVENTS
from bridge.routes.publish import stream_publish_stats

__all__ = ["METRICS_PATH", "REGISTRY", "setup"]

METRICS_PATH = "/metrics"
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


class _Scrape(Collector):
    """One scrape: the app's registry (process figures) and the bridge's snapshot."""

    def __init__(self, registry: CollectorRegistry, snapshot: Snapshot) -> None:
        self._registry = registry
        self._bridge = SnapshotCollector(snapshot)

    def collect(self) -> Iterator[Metric]:
        """The process figures, then the bridge's."""
        yield from self._registry.collect()
        yield from self._bridge.collect()


async def _snapshot(app: web.Application) -> Snapshot:
    uploader = app.get(UPLOADER)
    # The one await of a scrape comes first, so everything else is read at one instant.
    s3 = await uploader.counts() if uploader is not None else None
    events, rules, recorder = app.get(EVENTS), app.get(RULES), app.get(RECORDER)
    mqtt = app.get(MQTT_STATS)
    return Snapshot(
        streams={s.name: s.stats() for s in app[HUB].streams},
        events=events.stats() if events is not None else None,
        automation=rules.stats() if rules is not None else None,
        recorder=recorder.stats() if recorder is not None else None,
        s3=s3,
        mqtt=mqtt() if mqtt is not None else None,
        publish=[(s.name, p) for s in app[HUB].streams for p in stream_publish_stats(app, s.name)],
    )


async def _metrics(request: web.Request) -> web.Response:
    snapshot = await _snapshot(request.app)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(_Scrape(request.app[REGISTRY], snapshot))
    # The charset sits inside content_type; aiohttp takes the header as it is given.
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    """``GET /metrics``, with the process, platform and GC collectors on the app's registry."""
    registry = app[REGISTRY] = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    app.router.add_get(METRICS_PATH, _metrics)

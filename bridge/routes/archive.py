"""The cloud archive's context: SkyBell's own recordings fetched into the clips folder.

No routes of its own (fetched videos are clips, served by ``bridge.routes.clips``). With
``[archive] enabled`` it syncs every ``sync_interval``, and ``bridge.routes.automation`` hands
it each vready event. It shares the recorder's retention, so this comes after the clips setup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from bridge.config import ArchiveSettings
from bridge.record.archive import CloudArchive
from bridge.routes.clips import RECORDER, STORE
from bridge.skybell import SkyBellClient

__all__ = ["ARCHIVE", "setup"]

ARCHIVE = web.AppKey("archive", CloudArchive)


def setup(
    app: web.Application,
    options: ArchiveSettings,
    client: SkyBellClient,
    http: aiohttp.ClientSession,
) -> None:
    """Add the archive's context; it runs periodic syncs only when ``options.enabled``."""

    async def archive_context(app: web.Application) -> AsyncIterator[None]:
        archive = app[ARCHIVE] = CloudArchive(
            client, http, app[STORE], retention=app[RECORDER].retention
        )
        try:
            if options.enabled:
                archive.run_periodic(options.sync_interval, lookback=options.since_days * 86400)
            yield
        finally:
            await archive.close()

    app.cleanup_ctx.append(archive_context)

"""``skybell-bridge clips list|sync|reindex|prune``: the clips folder from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.cloud import open_cloud
from bridge.commands.clips_sync import ProgressPrinter, parse_since
from bridge.commands.common import print_table
from bridge.config import Settings
from bridge.skybell import find_device

if TYPE_CHECKING:
    from bridge.record import ClipStore

__all__ = ["add_parsers"]


def _open_store(settings: Settings) -> ClipStore:
    # Imported when a command runs: the clip store brings PyAV along.
    from bridge.record import ClipStore

    return ClipStore(settings.storage.clips_dir)


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """Print the newest clips, filtered."""
    store = await asyncio.to_thread(_open_store, settings)
    try:
        page = await store.query(device=args.device, event=args.event, limit=args.limit)
    finally:
        store.close()
    rows = [("ID", "DEVICE", "EVENT", "START", "SECONDS", "MB", "SOURCE", "STATE", "PATH")]
    for c in page.clips:
        start = datetime.fromtimestamp(c.start, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            (
                str(c.id),
                c.device,
                c.event,
                start,
                f"{c.duration:.1f}",
                f"{c.size / 1e6:.1f}",
                c.source,
                c.state,
                c.path,
            )
        )
    print_table(rows)
    return 0


async def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    """Download SkyBell's recordings since a time into the clips folder, with progress."""
    from bridge.record import Retention
    from bridge.record.archive import CloudArchive

    store = await asyncio.to_thread(_open_store, settings)
    try:
        async with open_cloud(settings) as cloud:
            device_ids = None
            if args.device:
                device_ids = [find_device(await cloud.client.devices(), args.device).id]
            retention = Retention(store, settings.record)
            archive = CloudArchive(cloud.client, cloud.session, store, retention=retention)
            printer = ProgressPrinter()
            try:
                report = await archive.sync(args.since, device_ids, progress=printer)
            finally:
                printer.finish()
                await archive.close()
    finally:
        store.close()
    print(
        f"downloaded {report.downloaded}, skipped {report.skipped}, failed {report.failed} "
        f"({report.bytes / 1e6:.1f} MB)"
    )
    for line in report.errors:
        print(f"  {line}", file=sys.stderr)
    return 1 if report.failed else 0


async def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the index from the files in the clips folder."""
    store = await asyncio.to_thread(_open_store, settings)
    try:
        counts = await store.reindex()
    finally:
        store.close()
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing to do")
    return 0


async def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Apply retention now: delete the oldest clips beyond the configured age and size."""
    from bridge.record import Retention

    store = await asyncio.to_thread(_open_store, settings)
    try:
        deleted = await asyncio.to_thread(Retention(store, settings.record).run)
    finally:
        store.close()
    print(f"deleted {len(deleted)} clip(s), {sum(c.size for c in deleted) / 1e6:.1f} MB")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``clips`` and its subcommands."""
    p = sub.add_parser("clips", help="list, sync, reindex or prune recorded clips")
    csub = p.add_subparsers(dest="clips_command", required=True, metavar="ACTION")
    ls = csub.add_parser("list", help="the newest clips")
    ls.add_argument("--device", help="stream name or device id")
    ls.add_argument("--event", help="doorbell, motion, manual, ...")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=cmd_list)
    sy = csub.add_parser("sync", help="download SkyBell's own recordings")
    sy.add_argument(
        "--since", type=parse_since, default="1d", help="2d, 12h, 30m, 1w or an ISO date"
    )
    sy.add_argument("--device", help="one doorbell (default: all)")
    sy.set_defaults(func=cmd_sync)
    r = csub.add_parser("reindex", help="rebuild the index from the clips folder")
    r.set_defaults(func=cmd_reindex)
    pr = csub.add_parser("prune", help="apply retention now")
    pr.set_defaults(func=cmd_prune)

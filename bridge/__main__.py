"""The ``skybell-bridge`` command line: parse the arguments, load Settings, run one command.

The commands are in :mod:`bridge.commands`, one module per group. Exit codes: 0 success, 1 a
cloud or runtime failure, 2 bad configuration, usage or device name. Errors print one line; a
traceback is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from bridge.commands import (
    clips,
    doorbells,
    events,
    live,
    serve,
    sim,
    switchbot,
    talk,
    triggers,
)
from bridge.commands.common import Command
from bridge.config import ENV_CONFIG, load_settings
from bridge.errors import BridgeError, CloudError, ConfigError, UnknownDevice
from bridge.logs import setup_logging

# In the order `--help` lists them.
_COMMANDS = (doorbells, live, talk, sim, serve, clips, events, triggers, switchbot)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skybell-bridge",
        description="Bridge SkyBell doorbells to RTSP, HLS, MJPEG and WebRTC. With no SkyBell "
        "credentials configured, it runs against a built-in simulator.",
    )
    parser.add_argument("--config", help=f"TOML settings file (default: ${ENV_CONFIG})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skybell-bridge`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log.format, "debug" if args.verbose else settings.log.level)
    func: Command = args.func
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(func(settings, args))
        return 130
    except UnknownDevice as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except CloudError as err:
        print(f"error: SkyBell cloud: {err}", file=sys.stderr)
        return 1
    except (BridgeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

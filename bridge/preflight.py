"""Checks that ``serve`` makes before it opens anything: exposure, the clips folder, the ports.

Each failure is a ``ConfigError`` naming the key to change, so the CLI prints one line and
exits 2 instead of a traceback, or worse, a bridge that runs in a state nobody asked for.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import tempfile
from pathlib import Path

from bridge.config import ServerSettings, Settings
from bridge.errors import ConfigError

__all__ = [
    "bind_error",
    "check_exposure",
    "check_storage",
    "is_loopback",
    "open_without_password",
]

_HOW_TO_SET = (
    "set server.username and server.password (env SKYBELL_BRIDGE_SERVER_USERNAME and "
    "SKYBELL_BRIDGE_SERVER_PASSWORD, or SKYBELL_BRIDGE_SERVER_PASSWORD_FILE / password_file "
    "for a file), listen on 127.0.0.1, or set server.allow_lan_without_password = true"
)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A wildcard (""), a LAN name or a typo: any of them may be reachable from elsewhere.
        return False


def open_without_password(server: ServerSettings) -> list[str]:
    """The listen keys bound beyond loopback while no password guards them."""
    if server.password:  # an empty password is no password
        return []
    return [
        key
        for key, host in (("server.host", server.host), ("server.rtsp_host", server.rtsp_host))
        if not is_loopback(host)
    ]


def check_exposure(server: ServerSettings) -> list[str]:
    """Refuse LAN listeners without a password unless explicitly allowed; return what is open.

    Without a password anyone who reaches the port watches the doorbell live and deletes its
    clips, so the default is loopback only; opening it needs allow_lan_without_password.
    """
    exposed = open_without_password(server)
    if exposed and not server.allow_lan_without_password:
        key = exposed[0]
        host = server.host if key == "server.host" else server.rtsp_host
        raise ConfigError(
            key, f"{host!r} is reachable beyond this machine and no password is set; {_HOW_TO_SET}"
        )
    return exposed


def check_storage(settings: Settings) -> None:
    """The clips folder exists (or can be made), is a folder, is writable, and min_free fits."""
    key = "storage.clips_dir"
    root = settings.storage.clips_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(key, f"{root} exists and is not a folder") from None
    except OSError as err:
        raise ConfigError(key, f"cannot create {root}: {err.strerror}") from None
    if not root.is_dir():
        raise ConfigError(key, f"{root} is not a folder")
    # os.access is wrong for root and for read-only mounts in some containers: really write.
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)
    except OSError as err:
        raise ConfigError(key, f"{root} is not writable: {err.strerror}") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    min_free = settings.record.min_free_mb
    total_mb = shutil.disk_usage(root).total >> 20
    if min_free > total_mb:
        # Recording would refuse every clip with "storage full" forever: a typo, not a policy.
        raise ConfigError(
            "record.min_free_mb",
            f"{min_free} MB is more than the whole disk holding {root} ({total_mb} MB)",
        )


def bind_error(err: OSError, prefix: str, host: str, port: int) -> ConfigError:
    """A listener's bind failure as a ConfigError naming ``{prefix}host`` or ``{prefix}port``."""
    host_key, port_key = f"server.{prefix}host", f"server.{prefix}port"
    where = f"{host}:{port}"
    if isinstance(err, socket.gaierror):
        return ConfigError(host_key, f"cannot resolve {host!r}: {err.strerror}")
    if err.errno == errno.EADDRINUSE:
        return ConfigError(port_key, f"{where} is already in use by another program")
    if err.errno == errno.EACCES:
        return ConfigError(port_key, f"not allowed to listen on {where} (ports below 1024)")
    if err.errno == errno.EADDRNOTAVAIL:
        return ConfigError(host_key, f"{host!r} is not an address of this machine")
    reason = err.strerror or str(err)
    return ConfigError(host_key, f"cannot listen on {where}: {reason}")

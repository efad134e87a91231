"""Connection limits shared by the HTTP and RTSP listeners, and the process's descriptor budget.

One host must not be able to take the bridge down by opening connections and sending nothing:
every socket is a file descriptor, and a process out of descriptors can no longer answer
``/api/health``, open UDP ports for a player, or reach the cloud. So the listeners ask a
``ConnectionLimiter`` before serving a client. It caps connections overall and per client
address, and keeps a reserve of descriptors below ``RLIMIT_NOFILE`` that client connections may
not take. When a cap is reached, the oldest connection that has not yet proved itself (sent a
whole request, or authenticated) gives way to the new one, so a flood of idle sockets cannot
lock out a real client; only when every connection has proved itself is the new one refused.

Plain values only: no aiohttp, no config, so any listener can use it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import resource
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConnectionLimiter",
    "RateLog",
    "install_accept_error_filter",
    "open_fds",
    "raise_nofile_limit",
]

_LOGGER = logging.getLogger(__name__)

_ACCEPT_ERROR = "socket.accept() out of system resource"
_PROC_FD = "/proc/self/fd"


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:  # macOS refuses RLIM_INFINITY, for one
            _LOGGER.debug("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, hard, err)
        else:
            soft = hard
    _LOGGER.debug("open file limit: %d (hard %d)", soft, hard)
    return soft, hard


def open_fds() -> int | None:
    """How many descriptors the process holds, or None where that cannot be counted."""
    try:
        # listdir itself needs a descriptor: when there is none left, that is the answer too.
        return len(os.listdir(_PROC_FD)) - 1
    except FileNotFoundError:
        return None  # not Linux: the connection caps still apply
    except OSError:
        return _soft_limit()


def _soft_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class RateLog:
    """Logs the first occurrence at once, then at most one line per interval with a count.

    A flood (accept() failing with EMFILE, connections refused at the cap) must not turn into
    a flood of log lines: the issue saw 62 MB of them in 15 s.
    """

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        level: int = logging.WARNING,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._level = level
        self._interval = interval
        self._clock = clock
        self._count = 0
        self._next = 0.0
        self.total = 0

    def hit(self, detail: str) -> None:
        """Count one occurrence; log if the last line is older than the interval."""
        self._count += 1
        self.total += 1
        now = self._clock()
        if now >= self._next:
            self._logger.log(
                self._level,
                "%s: %d time(s) since the last report (latest: %s)",
                self._message,
                self._count,
                detail,
            )
            self._count = 0
            self._next = now + self._interval


def install_accept_error_filter(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Log accept() resource errors once a minute with a count; returns a function to undo it."""
    previous = loop.get_exception_handler()
    log = RateLog(_LOGGER, "accept() failed for lack of resources (descriptors or memory)")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio reports each failed accept() here, then pauses that listener for a second;
        # the pause is fine, one traceback per attempt is not.
        if context.get("message") == _ACCEPT_ERROR:
            log.hit(str(context.get("exception")))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

    def uninstall() -> None:
        if loop.get_exception_handler() is handler:
            loop.set_exception_handler(previous)

    return uninstall


@dataclass
class _Ticket:
    peer: str
    close: Callable[[], None]
    proven: bool = False
    since: float = field(default_factory=time.monotonic)


class ConnectionLimiter:
    """Admits client connections within the caps; one limiter is shared by every listener."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_per_client: int,
        fd_reserve: int | None = None,
        exempt: Iterable[str] = (),
        count_fds: Callable[[], int | None] = open_fds,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        soft = _soft_limit()
        # Descriptors client connections may not take: enough for health checks, players'
        # UDP ports, clip files and the cloud's HTTPS and WebRTC sockets.
        self.fd_reserve = fd_reserve if fd_reserve is not None else max(64, soft // 8)
        self._fd_limit = soft - self.fd_reserve
        self._count_fds = count_fds
        # Addresses the per-client cap does not apply to: a reverse proxy speaks for many users.
        self._exempt = _networks(exempt)
        self._tickets: dict[Hashable, _Ticket] = {}
        self._per_client: dict[str, int] = {}
        self.refused = 0
        self.evicted = 0
        self._refusals = RateLog(_LOGGER, "connections refused at the limits")

    def __len__(self) -> int:
        return len(self._tickets)

    def fds_low(self, keep: int | None = None) -> bool:
        """Whether fewer than ``keep`` descriptors (default: the reserve) are left."""
        fds = self._count_fds()
        limit = self._fd_limit if keep is None else self._fd_limit + self.fd_reserve - keep
        return fds is not None and fds >= limit

    def admit(self, key: Hashable, peer: str, close: Callable[[], None]) -> str | None:
        """Take a new connection in (None), or say in one line why it is refused.

        ``close`` must drop the connection at once; it is called when the connection gives way
        to a newer one. A refused connection is not registered: close it without ``release``.
        """
        crowded = self._per_client.get(peer, 0) >= self.max_per_client
        if crowded and not self._is_exempt(peer) and not self._evict(peer):
            return self._refuse(peer, "too many connections from this address")
        if len(self._tickets) >= self.max_connections and not self._evict(None):
            return self._refuse(peer, "too many connections")
        if self.fds_low() and not self._evict(None):
            return self._refuse(peer, "out of file descriptors")
        self._tickets[key] = _Ticket(peer, close)
        self._per_client[peer] = self._per_client.get(peer, 0) + 1
        return None

    def prove(self, key: Hashable) -> None:
        """The connection sent a whole request (or authenticated): it no longer gives way."""
        ticket = self._tickets.get(key)
        if ticket is not None:
            ticket.proven = True

    def release(self, key: Hashable) -> None:
        """The connection closed; safe to call twice."""
        ticket = self._tickets.pop(key, None)
        if ticket is None:
            return
        left = self._per_client[ticket.peer] - 1
        if left:
            self._per_client[ticket.peer] = left
        else:
            del self._per_client[ticket.peer]

    def stats(self) -> dict[str, int]:
        """Open, refused and evicted connections."""
        return {
            "connections": len(self._tickets),
            "clients": len(self._per_client),
            "refused": self.refused,
            "evicted": self.evicted,
        }

    def _is_exempt(self, peer: str) -> bool:
        if not self._exempt:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in net for net in self._exempt)

    def _evict(self, peer: str | None) -> bool:
        """Close the oldest unproven connection (of ``peer``, or of the busiest address)."""
        victim: Hashable | None = None
        best: tuple[int, float] | None = None
        for key, ticket in self._tickets.items():
            if ticket.proven or (peer is not None and ticket.peer != peer):
                continue
            # The busiest address gives way first, and within it the oldest connection.
            rank = (-self._per_client[ticket.peer], ticket.since)
            if best is None or rank < best:
                victim, best = key, rank
        if victim is None:
            return False
        ticket = self._tickets[victim]
        self.release(victim)
        self.evicted += 1
        _LOGGER.debug("connection from %s gives way to a new one", ticket.peer)
        ticket.close()
        return True

    def _refuse(self, peer: str, reason: str) -> str:
        self.refused += 1
        self._refusals.hit(f"{reason}, {peer}")
        return reason


def _networks(
    values: Iterable[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            _LOGGER.debug("not an address or network: %r", value)
    return nets

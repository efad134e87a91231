"""One limiter for every password check: the login form, Basic on the API, RTSP Basic and Digest.

Guessing is counted in two dimensions, and they do different things:

- **Per client address, refuse.** After ``free_failures`` wrong guesses an address must wait,
  and each further failure doubles the wait (capped). While it waits, it is refused *without*
  its credentials being checked: if the right password got through a lockout, the lockout would
  tell a guesser when it had guessed right. A success does not clear the count, so a guesser
  behind the same NAT as a well-configured NVR gains nothing from the NVR's logins; the count
  is forgotten after ``forget_after`` seconds without a failure.
- **Per username, only slow down.** Many failures for one username across addresses mean a
  distributed guess. That never refuses anyone (so it cannot lock the right user out from a
  clean address): it shrinks every address's free allowance for that name to one guess, and
  delays the answer to each further wrong guess a little.

IPv6 clients are counted per /64, the block one home or host usually gets, so a guesser cannot
step to a fresh address for every guess. ``X-Forwarded-For`` is believed only from the
configured proxies (see :meth:`AuthLimiter.client`). Plain Python, no aiohttp: the HTTP
middleware and the RTSP server share one instance, built in the composition root.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["AuthLimiter", "parse_proxies"]

_LOGGER = logging.getLogger(__name__)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(text: str) -> list[_Network]:
    """Networks from a comma-separated list of addresses or CIDR blocks; ValueError names a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" as some proxies write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:5000"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class AuthLimiter:
    """Failed-authentication bookkeeping shared by every protocol's password check."""

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        user_alarm: int = 20,
        user_slowdown: float = 1.0,
        trusted_proxies: Iterable[_Network] = (),
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.user_alarm = user_alarm
        self.user_slowdown = user_slowdown
        self._proxies = tuple(trusted_proxies)
        self._max_entries = max_entries
        self._clock = clock
        self._addresses: OrderedDict[str, _Record] = OrderedDict()
        self._users: OrderedDict[str, _Record] = OrderedDict()

    # -- who is asking -----------------------------------------------------------------------

    def _trusted(self, hop: str) -> bool:
        address = _address(hop)
        return address is not None and any(address in net for net in self._proxies)

    def client(self, remote: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The key of the client behind ``remote``, given its ``X-Forwarded-For`` header values.

        Each proxy appends the address it heard from, so the list is read from the right: the
        first hop that is not a trusted proxy is the client. Anything further left was written
        by that client and proves nothing. Without trusted proxies the header is ignored.
        """
        hop = remote or "?"
        if self._proxies and self._trusted(hop):
            chain = [h.strip() for value in forwarded_for for h in value.split(",")]
            for previous in reversed([h for h in chain if h]):
                hop = previous
                if not self._trusted(hop):
                    break
        return self._key(hop)

    @staticmethod
    def _key(hop: str) -> str:
        address = _address(hop)
        if address is None:
            return hop[:64]  # not an address (a broken proxy): still a bounded, stable key
        if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        return str(address)

    # -- bookkeeping -------------------------------------------------------------------------

    def _get(self, table: OrderedDict[str, _Record], key: str, now: float) -> _Record | None:
        record = table.get(key)
        if (
            record is not None
            and now - record.last > max(self.forget_after, 0.0)
            and (now >= record.blocked_until)
        ):
            del table[key]
            return None
        return record

    def _add(self, table: OrderedDict[str, _Record], key: str, now: float) -> _Record:
        record = self._get(table, key, now)
        if record is None:
            record = table[key] = _Record()
            # Bounded: a flood of fresh addresses or names forgets the oldest, never grows
            # memory. The oldest are the ones least likely to be blocked still.
            while len(table) > self._max_entries:
                table.popitem(last=False)
        table.move_to_end(key)
        record.failures += 1
        record.last = now
        return record

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must wait before its credentials are checked again (0: now)."""
        now = self._clock()
        record = self._get(self._addresses, client, now)
        return max(0.0, record.blocked_until - now) if record is not None else 0.0

    def failures(self, client: str) -> int:
        """Wrong guesses on record for ``client`` (forgotten after ``forget_after`` quiet seconds)."""
        record = self._get(self._addresses, client, self._clock())
        return record.failures if record is not None else 0

    def user_under_attack(self, username: str) -> bool:
        """Whether recent failures for ``username`` across addresses look like a distributed guess."""
        record = self._get(self._users, username, self._clock())
        return record is not None and record.failures >= self.user_alarm

    def failed(self, client: str, username: str) -> float:
        """Count a wrong guess; returns how long the answer should be held back (slow-down)."""
        now = self._clock()
        user = self._add(self._users, username[:256], now)
        record = self._add(self._addresses, client, now)
        alarmed = user.failures >= self.user_alarm
        allowance = 1 if alarmed else self.free_failures
        over = record.failures - allowance
        if over >= 0:
            wait = min(self.max_delay, self.base_delay * 2.0 ** min(over, 64))
            record.blocked_until = max(record.blocked_until, now + wait)
            if over == 0:
                _LOGGER.warning(
                    "%s: %d failed authentication(s); making it wait (doubling from %g s)",
                    client,
                    record.failures,
                    wait,
                )
        return self.user_slowdown if alarmed else 0.0

    def stats(self) -> dict[str, int]:
        """How many addresses are waiting right now, and how many are tracked."""
        now = self._clock()
        waiting = sum(1 for r in self._addresses.values() if r.blocked_until > now)
        return {"blocked": waiting, "addresses": len(self._addresses), "users": len(self._users)}

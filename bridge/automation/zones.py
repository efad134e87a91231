"""Time zones for rule windows: IANA names (``Europe/London``) and POSIX TZ strings.

SkyBell stores a doorbell's zone as a POSIX TZ string (``EST5EDT,M3.2.0,M11.1.0``), which
``zoneinfo`` cannot load: it only reads compiled tz database files by name. ``PosixZone`` reads
the string itself. Only UTC → local conversion matters here (a rule asks "what is the wall time
at the door now?"), so ``fromutc`` is exact and ``utcoffset`` of a local time is best effort.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["PosixZone", "parse_zone"]

_NAME = r"(?:[A-Za-z]{3,}|<[A-Za-z0-9+\-]{3,}>)"
_OFFSET = r"[+-]?\d{1,3}(?::\d{1,2}(?::\d{1,2})?)?"
_RULE = r"(?:J\d{1,3}|\d{1,3}|M\d{1,2}\.\d\.\d)(?:/" + _OFFSET + r")?"
_POSIX = re.compile(
    rf"^(?P<std>{_NAME})(?P<std_off>{_OFFSET})"
    rf"(?:(?P<dst>{_NAME})(?P<dst_off>{_OFFSET})?(?:,(?P<start>{_RULE}),(?P<end>{_RULE}))?)?$"
)
_DEFAULT_RULES = ("M3.2.0", "M11.1.0")  # what glibc assumes for a DST name without rules
_TWO_AM = timedelta(hours=2)


def _seconds(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    hours, minutes, secs = [*parts, 0, 0][:3]
    if hours > 167 or minutes > 59 or secs > 59:
        raise ValueError(f"bad offset {text!r}")
    return sign * timedelta(hours=hours, minutes=minutes, seconds=secs)


def _day(rule: str, year: int) -> date:
    """The date a transition rule names in ``year``."""
    if rule.startswith("M"):
        month, week, weekday = (int(p) for p in rule[1:].split("."))
        if not (1 <= month <= 12 and 1 <= week <= 5 and 0 <= weekday <= 6):
            raise ValueError(f"bad rule {rule!r}")
        first = date(year, month, 1)
        # POSIX weekdays count from Sunday = 0; date.weekday() from Monday = 0.
        day = first + timedelta(days=(weekday - (first.weekday() + 1) % 7) % 7 + 7 * (week - 1))
        while day.month != month:  # week 5 means "the last one", which may be the fourth
            day -= timedelta(days=7)
        return day
    if rule.startswith("J"):  # 1..365, February 29 never counted
        n = int(rule[1:])
        if not 1 <= n <= 365:
            raise ValueError(f"bad rule {rule!r}")
        day = date(year, 1, 1) + timedelta(days=n - 1)
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return day + timedelta(days=1) if leap and day >= date(year, 3, 1) - timedelta(1) else day
    n = int(rule)
    if not 0 <= n <= 365:
        raise ValueError(f"bad rule {rule!r}")
    return date(year, 1, 1) + timedelta(days=n)


def _when(rule: str, year: int) -> datetime:
    """Naive local wall time of a transition (``rule[/time]``, 02:00 by default)."""
    name, _, at = rule.partition("/")
    return datetime.combine(_day(name, year), datetime.min.time()) + (
        _seconds(at) if at else _TWO_AM
    )


class PosixZone(tzinfo):
    """A fixed-rule zone from a POSIX TZ string."""

    def __init__(self, text: str) -> None:
        match = _POSIX.match(text.strip())
        if match is None:
            raise ValueError(f"not a POSIX TZ string: {text!r}")
        self.text = text.strip()
        # POSIX offsets are west-positive ("EST5" is five hours behind UTC): flip them.
        self._std_name = match["std"].strip("<>")
        self._std = -_seconds(match["std_off"])
        self._dst_name = (match["dst"] or "").strip("<>")
        self._dst = (
            -_seconds(match["dst_off"]) if match["dst_off"] else self._std + timedelta(hours=1)
        )
        self._rules = (match["start"], match["end"]) if match["start"] else _DEFAULT_RULES
        self._years: dict[int, tuple[datetime, datetime]] = {}
        if self._dst_name:
            for rule in self._rules:
                _when(rule, 2000)  # a bad rule fails here, at start, not at the first event

    def __repr__(self) -> str:
        return f"PosixZone({self.text!r})"

    def _dst_at_utc(self, utc: datetime) -> bool:
        if not self._dst_name:
            return False
        naive = utc.replace(tzinfo=None)
        start, end = self._transitions(naive.year)
        if start < end:  # northern hemisphere: summer inside the year
            return start <= naive < end
        return not end <= naive < start  # southern: summer spans New Year

    def _transitions(self, year: int) -> tuple[datetime, datetime]:
        """Naive UTC start and end of daylight saving in ``year``."""
        found = self._years.get(year)
        if found is None:
            # The start is written in standard time and the end in daylight time.
            found = (
                _when(self._rules[0], year) - self._std,
                _when(self._rules[1], year) - self._dst,
            )
            self._years[year] = found
        return found

    def _dst_at_local(self, local: datetime) -> bool:
        if not self._dst_name:
            return False
        return self._dst_at_utc(local.replace(tzinfo=None) - self._std)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        """Offset from UTC of a local time (gaps and folds resolved as standard time)."""
        if dt is None:
            return self._std
        return self._dst if self._dst_at_local(dt) else self._std

    def dst(self, dt: datetime | None) -> timedelta:
        """How far daylight saving moves the clock at ``dt``."""
        return self.utcoffset(dt) - self._std

    def tzname(self, dt: datetime | None) -> str:
        """The abbreviation in force at ``dt``."""
        return self._dst_name if dt is not None and self._dst_at_local(dt) else self._std_name

    def fromutc(self, dt: datetime) -> datetime:
        """Local time for a UTC time (``dt`` carries this zone, as ``astimezone`` passes it)."""
        utc = dt.replace(tzinfo=None)
        offset = self._dst if self._dst_at_utc(utc) else self._std
        return (utc + offset).replace(tzinfo=self)


@lru_cache(maxsize=64)
def parse_zone(text: str) -> tzinfo:
    """An IANA zone name or a POSIX TZ string as a tzinfo; ValueError if it is neither."""
    text = text.strip()
    if not text:
        raise ValueError("empty time zone")
    if text.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        pass  # not a tz database name; maybe the POSIX form SkyBell stores
    return PosixZone(text)

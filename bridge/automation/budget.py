"""A daily API call budget: warns once near the limit and refuses at it, instead of the API.

SwitchBot allows 10,000 calls a day per account and answers a plain 401 "Unauthorized" past it,
which looks exactly like a bad token. Counting locally lets the bridge say what is wrong and keep
a few calls in hand. The API documents neither the time zone nor the hour of the reset, so the
day here ends at UTC midnight; the count is also only a lower bound, since other apps on the same
token spend the same allowance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from bridge.automation.switchbot_errors import BudgetExhausted

__all__ = ["DAILY_LIMIT", "BudgetUsage", "BudgetUsageDict", "CallBudget"]

_LOGGER = logging.getLogger(__name__)

DAILY_LIMIT = 10_000


class BudgetUsageDict(TypedDict):
    """The SwitchBot call budget in ``/api/automation``."""

    used: int
    limit: int
    remaining: int
    warn_at: int  # the count at which the log warns once
    resets_at: str  # ISO 8601: the next UTC midnight


@dataclass(frozen=True)
class BudgetUsage:
    """Calls spent today, for the status page."""

    used: int
    limit: int
    warn_at: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        """Calls left before the budget refuses."""
        return max(0, self.limit - self.used)

    def as_dict(self) -> BudgetUsageDict:
        """JSON-friendly view."""
        return {
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "warn_at": self.warn_at,
            "resets_at": self.resets_at.isoformat(),
        }


class CallBudget:
    """Counts calls per UTC day; optionally kept in a small JSON file across restarts."""

    def __init__(
        self,
        limit: int = DAILY_LIMIT,
        *,
        warn_fraction: float = 0.8,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.warn_at = max(1, math.ceil(limit * warn_fraction))
        self._path = path
        self._clock = clock
        self._day = self._today()
        self._used = 0
        self._warned = False
        self._save_failed = False  # log a broken budget file once, not on every call
        self._load()

    def take(self, what: str = "") -> None:
        """Spend one call, or raise ``BudgetExhausted`` without spending if none is left."""
        self._roll()
        if self._used >= self.limit:
            usage = self.usage()
            raise BudgetExhausted(
                f"daily call budget used up ({usage.used}/{usage.limit}); "
                f"refusing until {usage.resets_at:%Y-%m-%d %H:%M} UTC",
                path=what,
            )
        self._used += 1
        if not self._warned and self._used >= self.warn_at:
            self._warned = True
            _LOGGER.warning(
                "SwitchBot daily call budget at %d of %d (%d%%); calls stop at the limit until %s",
                self._used,
                self.limit,
                100 * self._used // self.limit,
                f"{self.usage().resets_at:%Y-%m-%d %H:%M} UTC",
            )
        self._save()

    def usage(self) -> BudgetUsage:
        """Used, limit and the moment the count resets."""
        self._roll()
        start = datetime.strptime(self._day, "%Y-%m-%d").replace(tzinfo=UTC)
        return BudgetUsage(
            used=self._used,
            limit=self.limit,
            warn_at=self.warn_at,
            resets_at=start + timedelta(days=1),
        )

    # -- day and persistence -----------------------------------------------------------------

    def _today(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%d")

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            if self._used:
                _LOGGER.info(
                    "SwitchBot call budget reset for %s (%d used on %s)",
                    today,
                    self._used,
                    self._day,
                )
            self._day, self._used, self._warned = today, 0, False

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
            day, used, warned = data["day"], int(data["used"]), bool(data.get("warned", False))
        except (OSError, ValueError, KeyError, TypeError) as err:
            # A lost count is better than refusing to start: the worst case is one 401 at the limit.
            _LOGGER.warning("ignoring unreadable budget file %s: %s", self._path, err)
            return
        if day == self._day:
            self._used, self._warned = max(0, used), warned

    def _save(self) -> None:
        if self._path is None:
            return
        data = json.dumps({"day": self._day, "used": self._used, "warned": self._warned})
        # A few dozen bytes, written synchronously: a thread hop would cost more than the write.
        # Write-then-rename so a crash mid-write never leaves a half file that resets the count.
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(data)
            os.replace(tmp, self._path)
        except OSError as err:
            if not self._save_failed:
                _LOGGER.warning("cannot save budget file %s: %s", self._path, err)
            self._save_failed = True
        else:
            self._save_failed = False

"""Owned background tasks: every task an object starts is kept, and cancelled when it closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskSet"]


class TaskSet:
    """Tasks started by one owner; ``cancel_all()`` cancels and awaits every one still running.

    Keeping the reference matters: asyncio holds only a weak one, so an unowned task can be
    garbage-collected mid-flight, and nothing would cancel it at shutdown.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Start ``coro`` as a task owned by this set."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def join(self) -> None:
        """Wait until every task has finished, including any started meanwhile."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self, grace: float = 0.0) -> None:
        """Give the tasks ``grace`` seconds to finish, then cancel the rest and wait for them
        to finish unwinding."""
        tasks = set(self._tasks)
        if grace > 0 and tasks:
            _, tasks = await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)

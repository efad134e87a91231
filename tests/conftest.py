"""Shared fixtures: the simulated cloud on 127.0.0.1, clients for it, and a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.media import aiortc_patch
from bridge.redact import Secret
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY, DEFAULT_EMAIL, DEFAULT_PASSWORD, SimCloud
from bridge.skybell import SkyBellClient


class FakeClock:
    """A clock tests move by hand, so expiry is tested without sleeping."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _webrtc_on_loopback() -> None:
    # The bridge scopes host candidates per kind of peer and never restricts the whole process;
    # a test must, since 127.0.0.1 is the only address any of its peers may target.
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> SimCloud:
    return SimCloud(clock=clock, token_ttl=3600)


@pytest.fixture
async def sim_server(
    sim: SimCloud, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    return await aiohttp_server(sim.app())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


ClientFactory = Callable[..., SkyBellClient]


@pytest.fixture
def make_client(
    sim_server: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> ClientFactory:
    base = str(sim_server.make_url(API_PREFIX))

    def factory(mode: str = "key", **kwargs: Any) -> SkyBellClient:
        kwargs.setdefault("clock", clock)
        if mode == "key":
            kwargs.setdefault("api_key", Secret(DEFAULT_API_KEY))
        else:
            kwargs.setdefault("email", DEFAULT_EMAIL)
            kwargs.setdefault("password", Secret(DEFAULT_PASSWORD))
        return SkyBellClient(session, base_url=base, **kwargs)

    return factory


# A whole Bridge against the simulator, for the end-to-end tests of several modules.
from .serve_util import make_bridge, world  # noqa: E402, F401


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--only-tests-in",
        metavar="FILE",
        help="run only the tests whose node ids are lines of FILE (scripts/test's second pass)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("--only-tests-in")
    if not path:
        return
    with open(path, encoding="utf-8") as listing:
        wanted = {line.strip() for line in listing if line.strip()}
    keep = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep

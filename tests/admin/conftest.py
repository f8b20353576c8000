"""Fixtures of the console's tests: one server process per module, a browser per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser
from server.client import Harness
from servers import ServerProcess

from .console import open_browser


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with a short lease TTL; every test makes its own domain on it."""
    with ServerProcess(tmp_path_factory.mktemp("admin"), lease_ttl=3) as process:
        yield process


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with open_browser() as launched:
        yield launched


@pytest.fixture
async def api(console_server: ServerProcess) -> AsyncIterator[Harness]:
    """Devices and admin API calls beside the console, closed at the end."""
    async with Harness(console_server.server) as harness:
        yield harness

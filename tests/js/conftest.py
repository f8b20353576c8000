"""Fixtures of the JavaScript client's tests: the client in Node, driven by a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .driver import NodeClient, node_major

#: Launches a driver process (`node_flags` for node itself); all are ended after the test.
LaunchNode = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
async def launch_node() -> AsyncIterator[LaunchNode]:
    launched: list[NodeClient] = []

    async def launch(*node_flags: str) -> NodeClient:
        launched.append(await NodeClient.launch(*node_flags))
        return launched[-1]

    yield launch
    for driver in launched:
        errors = await driver.close()
        lines = [line for line in errors.splitlines() if line.strip()]
        # Node 20 warns that its global WebSocket is experimental; nothing else may be said.
        unexpected = [
            line
            for line in lines
            if "ExperimentalWarning" not in line and "--trace-warnings" not in line
        ]
        assert not unexpected, f"the driver wrote to stderr:\n{errors}"


@pytest.fixture
async def js(launch_node: LaunchNode) -> NodeClient:
    """One driver, in Node as it is here, with the ws package as the WebSocket."""
    return await launch_node()


@pytest.fixture
async def js_global(launch_node: LaunchNode) -> NodeClient:
    """One driver in a Node with a global WebSocket, for clients made with
    `ws=False`: Node 22+ has one, Node 20 has it behind a flag, which is used then."""
    return await launch_node(*(() if node_major() >= 22 else ("--experimental-websocket",)))

"""What the tests of `presence.client` share: watching a client's messages,
and making clients of a test domain's members.

A `Watcher` reads everything a client emits from the moment it is made, and
waits for a message with a timeout: nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.client import Member

from presence.client import Client

Message = dict[str, Any]

#: Seconds for something that should happen at once; only a failing test waits this long.
WAIT = 5.0


class Watcher:
    """Every message of one client, from now on."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[Message] = []
        self.ended = False
        self._taken: set[int] = set()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(client))

    async def _read(self, client: Client) -> None:
        async for message in client.messages():
            self.seen.append(message)
            self._changed.set()
        self.ended = True
        self._changed.set()

    def forget(self) -> None:
        """Forget every message seen so far."""
        self.seen.clear()
        self._taken.clear()

    def of(self, kind: str) -> list[Message]:
        return [message for message in self.seen if message["type"] == kind]

    async def expect(self, kind: str, timeout: float = WAIT, **fields: Any) -> Message:
        """The first message of type `kind` with `fields` not returned before;
        fails with what was seen if none comes within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, message in enumerate(self.seen):
                if (
                    index not in self._taken
                    and message["type"] == kind
                    and all(message.get(key) == value for key, value in fields.items())
                ):
                    self._taken.add(index)
                    return message
            if self.ended:
                raise AssertionError(f"no {kind} {fields} before it stopped: {self.shown()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
            except TimeoutError:
                raise AssertionError(f"no {kind} {fields} in {timeout} s: {self.shown()}") from None

    async def ended_with(self, timeout: float = WAIT) -> Message | None:
        """Wait for the client to stop; what `wait_stopped` returns."""
        async with asyncio.timeout(timeout):
            final = await self.client.wait_stopped()
            await self._task
        return final

    def shown(self) -> list[Message]:
        return [message for message in self.seen if message["type"] != "heartbeat_ack"][-20:]


def client_of(member: Member, url: str, **options: Any) -> Client:
    """A client of `member` at `url`; `options` override the device and the rest."""
    options.setdefault("device_id", f"dev-{member.id[:12]}")
    options.setdefault("kind", "desktop")
    return Client(url, token=member.token, **options)

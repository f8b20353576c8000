"""A WebSocket as sessions and wallboards use it: frames in order, no waiting on slow readers.

Frames from the connection's own task are sent at once (:meth:`Link.send`);
frames from shared tasks (announcements, notes) wait in a bounded outbox that
a short-lived task drains (:meth:`Link.push`). A device that lets the outbox
fill has stopped reading: it is cut off, by cancelling its endpoint's task,
which then frees what it held. Memory per connection stays bounded and no
shared task ever waits on one device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Generator
from typing import Any

from starlette.types import Receive, Send

from ..metrics import METRICS

MAX_OUTBOX = 64  # frames queued for a device that is not reading
DRAIN_TIMEOUT = 2.0  # seconds an ending endpoint waits for its last frames to go


class Link:
    """An accepted WebSocket, given as the ASGI ``receive`` and ``send`` of its connection."""

    __slots__ = ("_receive", "_send_message", "outbox", "pusher", "owner", "cut_off")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send_message = send
        self.outbox: deque[str | int] = deque()  # frames, and a close code last
        self.pusher: asyncio.Task[None] | None = None
        self.owner = asyncio.current_task()
        self.cut_off = False

    async def send(self, frame: str) -> None:
        if self.outbox or self.pusher is not None:
            self.push(frame)  # after what was pushed before
        else:
            await self._send(frame)

    def push(self, frame: str) -> None:
        self._queue(frame)

    def close(self, code: int) -> None:
        self._queue(code)

    async def receive(self) -> str | bytes | None:
        """The next frame, or ``None`` once the connection closed."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def drain(self) -> None:
        """Wait (a bounded time) until queued frames and the close are sent."""
        if self.pusher is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await asyncio.shield(self.pusher)

    def _queue(self, item: str | int) -> None:
        if self.cut_off:
            return
        if self.pusher is None and not self.outbox:
            self._send_now(item)
            return
        if len(self.outbox) >= MAX_OUTBOX:
            METRICS.cut_off.inc("not_reading")
            self.cut_off = True
            self.outbox.clear()
            if self.pusher is not None:
                self.pusher.cancel()
            if self.owner is not None:
                self.owner.cancel()
            return
        self.outbox.append(item)
        if self.pusher is None:
            self.pusher = asyncio.create_task(self._push(None))

    def _send_now(self, item: str | int) -> None:
        """Send without a task: a connection that can take the frame takes it at once.

        The send is driven one step by hand; only if it has to wait for the
        connection (its buffer is full) does a task take over the rest.
        """
        sending = self._send(item).__await__()
        try:
            waiting = sending.send(None)
        except StopIteration:
            return
        except Exception:  # the connection is gone: its endpoint cleans up
            return
        self.pusher = asyncio.create_task(self._push((sending, waiting)))

    def _send(self, item: str | int) -> Awaitable[None]:
        if isinstance(item, int):
            return self._send_message({"type": "websocket.close", "code": item})
        return self._send_message({"type": "websocket.send", "text": item})

    async def _push(self, started: tuple[Generator[Any, None, None], Any] | None) -> None:
        """Finish a send that had to wait, if any, then send the outbox in order."""
        try:
            if started is not None:
                sending, waiting = started
                try:
                    while True:
                        # What the send waits on: a future, or None for a bare yield.
                        if waiting is None:
                            await asyncio.sleep(0)
                        else:
                            # As a task's step does, before it waits on the future.
                            waiting._asyncio_future_blocking = False
                            await waiting
                        waiting = sending.send(None)
                except StopIteration:
                    pass
                finally:
                    sending.close()
            while self.outbox:
                await self._send(self.outbox.popleft())
        except Exception:  # the connection is gone: its endpoint cleans up
            self.outbox.clear()
        finally:
            self.pusher = None

"""The JavaScript client in Node, driven from a test: `driver.mjs` as a subprocess.

A `NodeClient` sends the driver commands (JSON lines on its stdin) and reads
what it prints: the answer to each command, and every event of the client,
which it keeps. Tests wait for an event or an answer with a timeout; nothing
sleeps a fixed time. Node and the `ws` package must be there (`npm ci --prefix
tests/js`): without them these tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from server.client import Member

Message = dict[str, Any]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
MODULE = HERE.parent.parent / "static" / "client" / "presence-client.js"
#: Seconds for something that should happen at once; only a failing test waits this long.
WAIT = 5.0


def node() -> str:
    """The `node` executable, with the driver's dependencies installed."""
    found = shutil.which("node")
    assert found is not None, "node is missing: apt-get install nodejs"
    assert (HERE / "node_modules" / "ws").is_dir(), "run npm ci --prefix tests/js first"
    return found


def node_major() -> int:
    version = subprocess.run([node(), "--version"], capture_output=True, text=True, check=True)
    return int(version.stdout.strip().lstrip("v").split(".")[0])


class JsError(AssertionError):
    """A command of the driver failed: the error the client threw or rejected with."""

    def __init__(self, error: Message) -> None:
        super().__init__(f"{error.get('name')} {error.get('code')}: {error.get('message')}")
        self.name: str | None = error.get("name")
        self.code: str | None = error.get("code")
        self.message: str | None = error.get("message")
        self.retryable: bool | None = error.get("retryable")


class NodeClient:
    """One driver process, driving one `PresenceClient` at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[Message] = []  # {"event": message, "state": state}
        self.reported: list[str] = []  # what the client reported (driver's `throwing`)
        self._answers: dict[int, asyncio.Future[Any]] = {}
        self._ids = 0
        self._taken: set[int] = set()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, *node_flags: str) -> NodeClient:
        process = await asyncio.create_subprocess_exec(
            node(),
            *node_flags,
            str(DRIVER),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return cls(process)

    async def create(self, *, ws: bool = True, throwing: bool = False, **options: Any) -> Message:
        """A new client with `options` (PresenceClient's; `tokens` for a getToken,
        a number for `random`); see driver.mjs."""
        answer: Message = await self.ask("create", options=options, ws=ws, throwing=throwing)
        return answer

    async def start(self, timeout: float = WAIT) -> Message:
        """`start()`: the license; raises `JsError` if it rejects."""
        license: Message = await self.ask("start", timeout=timeout)
        return license

    async def stop(self, timeout: float = 2 * WAIT) -> None:
        await self.ask("stop", timeout=timeout)

    async def state(self) -> Message:
        answer: Message = await self.ask("state")
        return answer

    async def call_start(self, call_id: str) -> Message:
        answer: Message = await self.ask("callStart", callId=call_id)
        return answer

    async def call_end(self, call_id: str) -> Message:
        answer: Message = await self.ask("callEnd", callId=call_id)
        return answer

    def begin(self, cmd: str, **fields: Any) -> asyncio.Future[Any]:
        """Send a command; the future of its answer (raising `JsError`)."""
        assert self.process.stdin is not None
        self._ids += 1
        answer = asyncio.get_running_loop().create_future()
        self._answers[self._ids] = answer
        line = json.dumps({"id": self._ids, "cmd": cmd, **fields}) + "\n"
        self.process.stdin.write(line.encode())
        return answer

    async def ask(self, cmd: str, timeout: float = WAIT, **fields: Any) -> Any:
        """Send a command and wait for its answer."""
        async with asyncio.timeout(timeout):
            return await self.begin(cmd, **fields)

    def of(self, kind: str) -> list[Message]:
        """Every event of type `kind` so far."""
        return [entry["event"] for entry in self.events if entry["event"]["type"] == kind]

    async def expect(self, kind: str, timeout: float = WAIT, **fields: Any) -> Message:
        """The first event of type `kind` with `fields` not returned before, with the
        client's state when it came as `_state`; fails with what was seen after
        `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, entry in enumerate(self.events):
                event = entry["event"]
                if (
                    index not in self._taken
                    and event["type"] == kind
                    and all(event.get(key) == value for key, value in fields.items())
                ):
                    self._taken.add(index)
                    return {**event, "_state": entry["state"]}
            if self._reader.done():
                raise AssertionError(f"no {kind} {fields}: the driver ended; {self.shown()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
            except TimeoutError:
                raise AssertionError(f"no {kind} {fields} in {timeout} s: {self.shown()}") from None

    def forget(self) -> None:
        """Forget every event seen so far."""
        self.events.clear()
        self._taken.clear()

    def shown(self) -> list[Message]:
        events = [entry["event"] for entry in self.events]
        return [event for event in events if event["type"] != "heartbeat_ack"][-20:]

    async def close(self) -> str:
        """End the driver (stdin closed, killed if it lingers); what it wrote to stderr."""
        assert self.process.stdin is not None and self.process.stderr is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(WAIT):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader
        return (await self.process.stderr.read()).decode(errors="replace")

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = json.loads(raw)
            if "reported" in line:
                self.reported.append(line["reported"])
            elif "id" in line:
                answer = self._answers.pop(line["id"])
                if "error" in line:
                    answer.set_exception(JsError(line["error"]))
                else:
                    answer.set_result(line["ok"])
            else:
                self.events.append(line)
            self._changed.set()
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(AssertionError("the driver ended without answering"))
        self._changed.set()


def options_of(member: Member, url: str, **options: Any) -> Message:
    """Client options for `member` at `url`; `options` override the device and the rest."""
    device = {"id": f"dev-{member.id[:12]}", "kind": "desktop"}
    device.update(options.pop("device", {}))
    return {"url": url, "token": member.token, "device": device, **options}

"""A webhook receiver run as a process of its own: the real endpoint of the tests.

    python tests/webhooks/receiver.py --port P --control-port C --log FILE [--mode MODE]

It listens on 127.0.0.1 at `--port` for webhook requests (HTTP/1.1, kept
alive, bodies by `Content-Length` or chunked) and appends one JSON line to
`--log` for every connection it accepts there (`{"kind": "connection", ...}`)
and for every request it reads (`{"kind": "request", "received_at",
"webhook_id", "timestamp", "signature", "headers", "body", "status", ...}`,
`body` as text, `status` the one it answers, `null` for none). Each line is
flushed as it is written, so a test reads it at once and a SIGKILL loses
nothing written; a restart on the same file appends.

How it answers depends on the mode of the request's path, or the default
mode when its path has none:

- `ok`: 200;
- `fail`: 500;
- `redirect`: 302 to `/redirected` of this receiver (a client that follows it
  shows up in the log as a request to that path);
- `hang`: no answer at all, the connection held open until the client closes it.

Modes change at runtime through a control endpoint on its own port
(`--control-port`), so that control traffic never reaches the log and every
connection to `--port` is one a webhook sender made:
`POST /control {"mode": MODE, "path"?: PATH}` sets the default mode, or that
of one path; `GET /control` answers the modes. It uses the standard library
only: it runs with any interpreter, outside the test process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, when run as a script
from httpserver import BadRequest, read_request  # noqa: E402

MODES = ("ok", "fail", "hang", "redirect")
REDIRECT_PATH = "/redirected"
ANSWERS = {"ok": (200, "OK"), "fail": (500, "Internal Server Error"), "redirect": (302, "Found")}


@dataclass
class Receiver:
    """The receiver's state: its modes and its log."""

    port: int
    log: IO[str]
    default: str = "ok"
    modes: dict[str, str] = field(default_factory=dict)

    def write(self, entry: dict[str, Any]) -> None:
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()

    def mode_of(self, path: str) -> str:
        return self.modes.get(path, self.default)

    async def serve_hooks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.write({"kind": "connection", "at": time.time(), "peer": list(peer or ())})
        try:
            while (request := await read_request(reader, writer)) is not None:
                mode = self.mode_of(request.path)
                self.write(
                    {
                        "kind": "request",
                        "received_at": time.time(),
                        "method": request.method,
                        "path": request.path,
                        "webhook_id": request.headers.get("webhook-id"),
                        "timestamp": request.headers.get("webhook-timestamp"),
                        "signature": request.headers.get("webhook-signature"),
                        "headers": request.headers,
                        "body": request.body.decode("utf-8", errors="replace"),
                        "mode": mode,
                        "status": ANSWERS[mode][0] if mode in ANSWERS else None,
                    }
                )
                if mode == "hang":
                    while await reader.read(65536):
                        pass
                    return
                status, reason = ANSWERS[mode]
                extra = {"Location": f"http://127.0.0.1:{self.port}{REDIRECT_PATH}"}
                await respond(writer, status, reason, b"{}", extra if mode == "redirect" else {})
        except (BadRequest, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = await read_request(reader, writer)
            if request is None:
                return
            if request.method == "POST":
                wanted = json.loads(request.body)
                mode = wanted.get("mode")
                if mode not in MODES:
                    await respond(writer, 400, "Bad Request", b'{"error": "unknown mode"}')
                    return
                if wanted.get("path") is None:
                    self.default = mode
                else:
                    self.modes[wanted["path"]] = mode
            state = json.dumps({"default": self.default, "modes": self.modes}).encode()
            await respond(writer, 200, "OK", state, {"Connection": "close"})
        except (BadRequest, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    reason: str,
    body: bytes,
    extra: dict[str, str] | None = None,
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    headers.update(extra or {})
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + body)
    await writer.drain()


async def main(port: int, control_port: int, log: Path, mode: str) -> None:
    with log.open("a", encoding="utf-8") as out:
        receiver = Receiver(port, out, default=mode)
        hooks = await asyncio.start_server(receiver.serve_hooks, "127.0.0.1", port)
        control = await asyncio.start_server(receiver.serve_control, "127.0.0.1", control_port)
        async with hooks, control:
            await asyncio.gather(hooks.serve_forever(), control.serve_forever())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--mode", choices=MODES, default="ok")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.port, arguments.control_port, arguments.log, arguments.mode))

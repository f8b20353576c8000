"""The HTTP/1.1 a test's own server processes read (the webhook receiver, the
identity provider): standard library only, as they run outside the test process.
A script in a folder of tests/ imports it after putting tests/ on its path."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class BadRequest(Exception):
    """The peer sent something that is not an HTTP/1.1 request."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """The next request of a connection, or None when the peer closed it between requests."""
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise BadRequest(line) from None
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n"):
        if not header:
            raise BadRequest("end of headers missing")
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)

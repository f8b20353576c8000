"""One HTTP POST to a webhook endpoint, to an address checked as it is connected to.

A webhook's URL is the customer's, so the server must not become a way into
the network it runs in: unless private targets are allowed, the URL must be
``https://`` and every address its host resolves to must be a public one
(:func:`~presence.core.webhooks.public_address`). The check is made on the
addresses themselves, resolved when the endpoint is saved (:func:`check`) and
again for each attempt, which then connects to the very address it checked,
so a DNS answer that changes in between cannot lead elsewhere.

HTTP/1.1 is spoken with h11 over an asyncio connection of our own; redirects
are not followed (a 3xx is a failure), the whole request has a timeout, and
no more than :data:`MAX_ANSWER` bytes of the answer's body are read.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11

from ..core.webhooks import public_address

#: Bytes of an answer's body read (and kept for the delivery log, shortened).
MAX_ANSWER = 4096
#: Characters of an answer's body shown in the delivery log.
SHOWN = 200
MAX_URL = 2000
USER_AGENT = "presence-webhooks/1"
_TLS = ssl.create_default_context()


class Unreachable(Exception):
    """The URL may not be delivered to (its message says why, for a person)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A URL taken apart: where to connect and what to ask for."""

    url: SplitResult
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.url.scheme == "https"

    @property
    def path(self) -> str:
        return (self.url.path or "/") + (f"?{self.url.query}" if self.url.query else "")


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of a POST: ``status`` (``None``: no answer) and, when it is
    not a success, ``error`` in a few words."""

    status: int | None
    error: str | None
    duration: float

    @property
    def delivered(self) -> bool:
        return self.error is None


def target(url: str, allow_private: bool) -> Target:
    """The URL's parts; :exc:`Unreachable` for a URL no webhook may have."""
    if len(url) > MAX_URL:
        raise Unreachable(f"The URL is longer than {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unreachable(f"This is not a URL: {exc}.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise Unreachable("The URL must start with https://.")
    if not parts.hostname:
        raise Unreachable("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise Unreachable("The URL must not hold a user name or password.")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts, parts.hostname, port or default)


async def addresses(where: Target, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to; :exc:`Unreachable` if there are
    none, or (unless ``allow_private``) if any of them is not public."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unreachable(f"{where.host} cannot be resolved: {exc}.") from None
    resolved = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not resolved:
        raise Unreachable(f"{where.host} resolves to no address.")
    if not allow_private:
        for address in resolved:
            if not public_address(address):
                raise Unreachable(
                    f"{where.host} resolves to {address}, a loopback, private, link-local "
                    "or otherwise non-public address, which webhooks may not reach."
                )
    return resolved


async def check(url: str, allow_private: bool) -> None:
    """Whether a webhook may have this URL: :exc:`Unreachable` if not."""
    await addresses(target(url, allow_private), allow_private)


async def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> Answer:
    """POST ``body`` to ``url`` within ``timeout`` seconds, all told."""
    started = time.monotonic()

    def answer(status: int | None, error: str | None) -> Answer:
        return Answer(status, error, time.monotonic() - started)

    try:
        async with asyncio.timeout(timeout):
            where = target(url, allow_private)
            status, text = await _exchange(
                where, await addresses(where, allow_private), body, headers
            )
    except TimeoutError:
        return answer(None, f"No answer within {timeout:g} s.")
    except Unreachable as exc:
        return answer(None, str(exc))
    except ssl.SSLError as exc:
        return answer(None, f"TLS failed: {exc.reason or exc}.")
    except OSError as exc:
        return answer(None, f"Connection failed: {exc.strerror or exc}.")
    except h11.ProtocolError as exc:
        return answer(None, f"The answer is not HTTP/1.1: {exc}.")
    if 200 <= status < 300:
        return answer(status, None)
    shown = f": {text[:SHOWN]}" if text else ""
    return answer(status, f"HTTP {status}{shown}")


async def _exchange(
    where: Target, resolved: list[str], body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    """Connect to the first of ``resolved`` that answers; send the request and
    read the answer's status and the start of its body."""
    failure: OSError | None = None
    for address in resolved:
        try:
            reader, writer = await asyncio.open_connection(
                address, where.port, ssl=_TLS if where.tls else None,
                server_hostname=where.host if where.tls else None,
            )  # fmt: skip
            break
        except ssl.SSLError:
            raise
        except OSError as exc:
            failure = exc
    else:
        assert failure is not None
        raise failure
    try:
        return await _request(reader, writer, where, body, headers)
    finally:
        writer.close()


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    where: Target,
    body: bytes,
    headers: dict[str, str],
) -> tuple[int, str]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=where.path,
        headers=[
            ("host", where.url.netloc),
            ("user-agent", USER_AGENT),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
            *headers.items(),
        ],
    )
    for sent in (request, h11.Data(data=body), h11.EndOfMessage()):
        writer.write(conn.send(sent) or b"")
    await writer.drain()
    status = 0
    content = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(MAX_ANSWER))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            content += event.data
            if len(content) >= MAX_ANSWER:
                break
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return status, content[:MAX_ANSWER].decode("utf-8", "replace").strip()

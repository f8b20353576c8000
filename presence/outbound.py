"""The HTTP requests the server makes: webhook deliveries, identity providers' keys.

The URLs are customers', so the server must not become a way into the
network it runs in. A :class:`Policy` says what a URL may be: ``https://``
only (unless ``http`` is allowed), and, for webhooks, only hosts whose every
address is a public one (:func:`~presence.core.webhooks.public_address`,
unless private ones are allowed). The check is made on the addresses
themselves, resolved when a URL is saved (:func:`check`) and again for each
request, which then connects to the very address it checked, so a DNS
answer that changes in between cannot lead elsewhere.

HTTP/1.1 is spoken with h11 over an asyncio connection of our own; redirects
are not followed (a 3xx is a failure), the whole request has a timeout, and
no more of the answer's body is read than the caller asks for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11

from .core.webhooks import public_address

#: Characters of an answer's body shown in an error.
SHOWN = 200
MAX_URL = 2000
USER_AGENT = "presence/1"
_READ = 16_384  # bytes read from the connection at a time
_TLS = ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Policy:
    """What URLs may be reached: ``http://`` too, and hosts with private addresses."""

    allow_http: bool = False
    allow_private: bool = False


def webhook_policy(allow_private: bool) -> Policy:
    """Webhooks reach public HTTPS hosts only, unless private targets are
    allowed (``PRESENCE_WEBHOOK_ALLOW_PRIVATE``), which allows ``http://`` too."""
    return Policy(allow_http=allow_private, allow_private=allow_private)


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
    """The outcome of a request: ``status`` (``None``: no answer), the start of
    the body, and, when it is not a 2xx, ``error`` in a few words."""

    status: int | None
    error: str | None
    duration: float
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.error is None


def target(url: str, policy: Policy) -> Target:
    """The URL's parts; :exc:`Unreachable` for a URL the policy does not allow."""
    if len(url) > MAX_URL:
        raise Unreachable(f"The URL is longer than {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unreachable(f"This is not a URL: {exc}.") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise Unreachable("The URL must start with https://.")
    if not parts.hostname:
        raise Unreachable("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise Unreachable("The URL must not hold a user name or password.")
    if not policy.allow_private and _is_address(parts.hostname):
        _check_public(parts.hostname, parts.hostname)
    default = 443 if parts.scheme == "https" else 80
    return Target(parts, parts.hostname, port or default)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_public(host: str, address: str) -> None:
    if not public_address(address):
        what = host if host == address else f"{host} resolves to {address}, which"
        raise Unreachable(
            f"{what} is a loopback, private, link-local or otherwise non-public address, "
            "which the server may not reach."
        )


async def addresses(where: Target, policy: Policy) -> list[str]:
    """The addresses the URL's host resolves to; :exc:`Unreachable` if there are
    none, or (unless the policy allows private ones) if any of them is not public."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(where.host, where.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unreachable(f"{where.host} cannot be resolved: {exc}.") from None
    resolved = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not resolved:
        raise Unreachable(f"{where.host} resolves to no address.")
    if not policy.allow_private:
        for address in resolved:
            _check_public(where.host, address)
    return resolved


async def check(url: str, policy: Policy) -> None:
    """Whether the policy lets this URL be reached: :exc:`Unreachable` if not."""
    await addresses(target(url, policy), policy)


async def request(
    method: str,
    url: str,
    policy: Policy,
    *,
    timeout: float,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_body: int = 4096,
) -> Answer:
    """``method`` ``url`` within ``timeout`` seconds, all told, reading at most
    ``max_body`` bytes of the answer's body."""
    started = time.monotonic()

    def answer(status: int | None, error: str | None, content: bytes = b"") -> Answer:
        return Answer(status, error, time.monotonic() - started, content)

    try:
        async with asyncio.timeout(timeout):
            where = target(url, policy)
            resolved = await addresses(where, policy)
            status, content = await _exchange(
                where, resolved, method, body, headers or {}, max_body
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
        return answer(None, f"No complete HTTP/1.1 answer: {exc}.")
    if 200 <= status < 300:
        return answer(status, None, content)
    text = content.decode("utf-8", "replace").strip()
    return answer(status, f"HTTP {status}: {text[:SHOWN]}" if text else f"HTTP {status}", content)


async def _exchange(
    where: Target,
    resolved: list[str],
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    max_body: int,
) -> tuple[int, bytes]:
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
        return await _send(reader, writer, where, method, body, headers, max_body)
    finally:
        writer.close()


async def _send(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    where: Target,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    max_body: int,
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    fields = [("host", where.url.netloc), ("user-agent", USER_AGENT), ("connection", "close")]
    if body is not None:
        fields.append(("content-length", str(len(body))))
    request = h11.Request(method=method, target=where.path, headers=[*fields, *headers.items()])
    sent: list[h11.Request | h11.Data | h11.EndOfMessage] = [request]
    if body is not None:
        sent.append(h11.Data(data=body))
    for event in [*sent, h11.EndOfMessage()]:
        writer.write(conn.send(event) or b"")
    await writer.drain()
    status = 0
    content = b""
    while True:
        got = conn.next_event()
        if got is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ))
        elif isinstance(got, h11.Response):
            status = got.status_code
        elif isinstance(got, h11.Data):
            content += got.data
            if len(content) >= max_body:
                break
        elif isinstance(got, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return status, content[:max_body]

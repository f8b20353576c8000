"""One outgoing request (presence.outbound), as webhooks send them, against
receivers on real sockets: what counts as delivered, what is refused before
any connection, and bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from presence import outbound
from presence.outbound import webhook_policy

Answerer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def receiver(answer: Answerer) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1 that reads a request and answers it with ``answer``;
    yields its port and the requests it read (head and body)."""
    requests: list[bytes] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(
                line.split(b":")[1] for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ))  # fmt: skip
            requests.append(head + await reader.readexactly(length))
            await answer(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], requests
        await asyncio.gather(*handlers)  # each ends once the sender has closed


def answering(status: str, body: bytes = b"", headers: str = "") -> Answerer:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{headers}\r\n".encode() + body
        )
        await writer.drain()

    return answer


async def post(port: int, *, timeout: float = 5.0) -> outbound.Answer:
    return await outbound.request(
        "POST", f"http://127.0.0.1:{port}/hook?x=1", webhook_policy(True), timeout=timeout,
        body=b'{"a": 1}', headers={"webhook-id": "7", "content-type": "application/json"},
    )  # fmt: skip


async def test_a_2xx_delivers_and_the_request_carries_body_and_headers() -> None:
    async with receiver(answering("204 No Content")) as (port, requests):
        answer = await post(port)
    assert (answer.status, answer.error, answer.ok) == (204, None, True)
    (request,) = requests
    assert request.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert b"webhook-id: 7\r\n" in request and b"content-type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')


async def test_an_error_status_fails_with_the_start_of_its_body() -> None:
    async with receiver(answering("500 Oops", b"x" * 10_000)) as (port, _):
        answer = await post(port)
    assert answer.status == 500 and not answer.ok
    assert answer.error == "HTTP 500: " + "x" * outbound.SHOWN


async def test_a_redirect_is_not_followed() -> None:
    async with receiver(answering("302 Found")) as (elsewhere, moved):
        async with receiver(
            answering("302 Found", headers=f"location: http://127.0.0.1:{elsewhere}/\r\n")
        ) as (port, requests):
            answer = await post(port)
    assert answer.status == 302 and answer.error == "HTTP 302"
    assert len(requests) == 1 and moved == []


async def test_a_receiver_that_never_answers_times_out_on_time() -> None:
    async def hang(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read()  # until the sender gives up and closes

    async with receiver(hang) as (port, requests):
        answer = await post(port, timeout=0.5)
    assert answer.status is None and answer.error == "No answer within 0.5 s."
    assert 0.5 <= answer.duration < 2.0
    assert len(requests) == 1


async def test_a_connection_closed_without_an_answer_fails_without_a_status() -> None:
    async def close(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
        pass  # the receiver closes the connection once it read the request

    async with receiver(close) as (port, requests):
        answer = await post(port)
    assert answer.status is None and answer.error is not None
    assert answer.error.startswith("No complete HTTP/1.1 answer: "), answer.error
    assert len(requests) == 1


async def test_a_closed_port_fails_with_the_reason() -> None:
    async with receiver(answering("200 OK")) as (port, _):
        pass  # closed again: nothing listens there now
    answer = await post(port)
    assert answer.status is None and answer.error is not None
    assert answer.error.startswith("Connection failed")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
async def test_private_targets_are_refused_before_any_connection(host: str) -> None:
    async with receiver(answering("200 OK")) as (port, requests):
        answer = await outbound.request(
            "POST", f"https://{host}:{port}/", webhook_policy(False), timeout=5.0, body=b"{}"
        )
    assert answer.status is None and answer.error is not None
    assert "non-public address" in answer.error
    assert requests == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://93.184.215.14/", "https://"),
        ("ftp://93.184.215.14/", "https://"),
        ("https:///path", "name a host"),
        ("https://user:pw@93.184.215.14/", "user name or password"),
        ("https://93.184.215.14:99999/", "not a URL"),
        ("https://" + "a" * 2000 + ".test/", "longer than"),
    ],
)
async def test_urls_no_webhook_may_have(url: str, words: str) -> None:
    with pytest.raises(outbound.Unreachable, match=words):
        await outbound.check(url, webhook_policy(False))


async def test_a_public_address_passes_the_check_without_a_connection() -> None:
    await outbound.check("https://93.184.215.14/hook", webhook_policy(False))

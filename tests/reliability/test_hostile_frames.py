"""Hostile frames against a live server: every answer is the spec's, the server
stays up, and a healthy device's heartbeats are not delayed.

A few hundred generated scenarios here; `python -m tests.reliability` plays
10,000+ frames.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server.client import Harness, check_error
from servers import ServerProcess

from .hostile import (
    MAX_FRAME,
    Deep,
    Frame,
    Fuzzer,
    HeartbeatProbe,
    Scenario,
    Target,
    Tokens,
    prepare,
    scenarios,
    text_frame,
)
from .test_guard import wallboard_answer, wallboard_hello

EXAMPLES = 300
#: Scenarios are played until this budget is spent, whichever comes first.
BUDGET_SECONDS = 120.0
#: A loose bound: the healthy device's heartbeats answer in about a millisecond.
P99_LIMIT = 0.5
#: Token guessing is braked per address; the fuzz sends many bad tokens.
NO_GUESSING_LIMIT = ("--auth-failures-per-minute", "1000000")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, ServerProcess]]:
    process = ServerProcess(tmp_path_factory.mktemp("fuzz"), lease_ttl=30, flags=NO_GUESSING_LIMIT)
    try:
        process.start()
        server = process.server
        yield prepare(server.base_url, server.admin_token, f"fuzz-{uuid.uuid4().hex[:8]}"), process
    finally:
        process.stop()


def test_hostile_frames_get_the_spec_answers(fuzzed: tuple[Target, ServerProcess]) -> None:
    target, process = fuzzed
    fuzzer = Fuzzer(target, strict=True)
    deadline = time.monotonic() + BUDGET_SECONDS

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def play(data: st.DataObject) -> None:
        scenario = data.draw(scenarios(target.tokens))
        if time.monotonic() < deadline:
            fuzzer.play(scenario)

    with HeartbeatProbe(target) as probe:
        play()
        latency = probe.stop()

    figures = fuzzer.figures
    print(
        f"\n{figures.frames} hostile frames on {figures.connections} connections; "
        f"healthy device: {latency.summary()}"
    )
    assert figures.frames >= EXAMPLES
    assert process.process is not None and process.process.poll() is None, "the server died"
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"{target.base_url}/healthz").json() == {"status": "ok"}
    assert latency.p99 < P99_LIMIT, latency.summary()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def hello(token: str, **device: object) -> dict[str, object]:
    return {"type": "hello", "token": token, "device": {"id": "d", "kind": "phone", **device}}


def padded(size: int) -> Frame:
    head = b'{"type":"heartbeat","pad":"'
    pad = "a" * (size - len(head) - 2)
    return Frame("sized", head + pad.encode() + b'"}', value={"type": "heartbeat", "pad": pad})


#: Frames that once broke the server, or sit right on a rule's edge: each is
#: played as its own scenario, so a failure names it.
KNOWN: dict[str, Callable[[Tokens], Scenario]] = {
    "array nested 5000 deep": lambda t: Scenario(None, [Frame("deep", nested(5000), value=Deep())]),
    "field nested 5000 deep": lambda t: Scenario(
        "named",
        [
            Frame(
                "deep",
                b'{"type":"heartbeat","x":' + nested(5000) + b"}",
                value={"type": "heartbeat", "x": Deep()},
            )
        ],
    ),
    "lone surrogate in device.name": lambda t: Scenario(
        None, [text_frame("hello", hello(t.named, name="\ud800"))]
    ),
    "lone surrogate in device.id": lambda t: Scenario(
        None, [text_frame("hello", hello(t.named, id="a\udfff"))]
    ),
    "lone surrogate in the token": lambda t: Scenario(
        None, [text_frame("hello", hello("prs_\ud800"))]
    ),
    "lone surrogate in call_id": lambda t: Scenario(
        "named", [text_frame("valid", {"type": "call_start", "call_id": "\ud800"})]
    ),
    "lone surrogate in seq": lambda t: Scenario(
        "named", [text_frame("valid", {"type": "heartbeat", "seq": "\ud800"})]
    ),
    "binary frame over 64 KiB": lambda t: Scenario(
        "named", [Frame("oversize", b"a" * (MAX_FRAME + 1), binary=True)]
    ),
    "text frame of exactly 64 KiB": lambda t: Scenario("named", [padded(MAX_FRAME)]),
    "text frame of 64 KiB and one byte": lambda t: Scenario("named", [padded(MAX_FRAME + 1)]),
    "text frame over 1 MiB": lambda t: Scenario(None, [padded(1_200_000)]),
    "invalid UTF-8 in a text frame": lambda t: Scenario(
        "named", [Frame("bad_utf8", b'{"type":"heartbeat","seq":"\xff"}')]
    ),
    "five bad messages": lambda t: Scenario(None, [Frame("not_json", b"{")] * 5),
    "hello from a user without license": lambda t: Scenario(
        None, [text_frame("hello", hello(t.none))]
    ),
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_hostile_frames(fuzzed: tuple[Target, ServerProcess], name: str) -> None:
    target, _ = fuzzed
    Fuzzer(target, strict=True).play(KNOWN[name](target.tokens))


def test_invalid_utf8_is_one_log_line_not_a_traceback(
    fuzzed: tuple[Target, ServerProcess],
) -> None:
    target, process = fuzzed
    logged = process.stderr.stat().st_size
    Fuzzer(target, strict=True).play(KNOWN["invalid UTF-8 in a text frame"](target.tokens))
    with process.stderr.open("rb") as log:
        log.seek(logged)
        lines = log.read().decode(errors="replace").splitlines()
    logged_utf8 = [line for line in lines if "invalid UTF-8" in line]
    assert len(logged_utf8) == 1, lines
    assert logged_utf8[0].endswith("127.0.0.1 sent invalid UTF-8; closed 1007"), lines
    assert not any("Traceback" in line for line in lines), lines


#: Under the 64 KiB frame limit, and far deeper than json.loads recurses.
NESTED = "[" * 30_000 + "]" * 30_000


async def test_deeply_nested_json_is_a_bad_message_on_both_endpoints(
    fuzzed: tuple[Target, ServerProcess],
) -> None:
    """The same deep frame, at the top or in a field, gets the same answer from
    both endpoints (the wallboard's closes 4400, before authentication), and
    no traceback; the server carries on."""
    _, process = fuzzed
    server = process.server
    logged = process.stderr.stat().st_size
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        board_token = await domain.token("wallboard")
        member = await domain.named_user()
        for frame in (NESTED, '{"type":"hello","token":' + NESTED + "}"):
            answer = await wallboard_answer(server, frame)
            assert [m.get("code") for m in answer.messages] == ["bad_message"], answer
            check_error(answer.messages[0])
            assert answer.close_code == 4400, answer

            device = await harness.device(heartbeats=False)
            await device.send_text(frame)
            await device.expect_error("bad_message")
            assert (await device.login(member.token))["type"] == "welcome"
            await device.close()
        assert (await wallboard_hello(server, board_token)).messages[-1]["type"] == "snapshot"
    with process.stderr.open("rb") as log:
        log.seek(logged)
        lines = log.read().decode(errors="replace").splitlines()
    assert not any("Traceback" in line for line in lines), lines

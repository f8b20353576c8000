"""Hostile frames for the device endpoint, and what the spec says of each.

`scenarios` is a hypothesis strategy of short device connections: optionally a
good `hello` first, then up to six frames from every family of bad input
(random JSON, wrong types, missing and extra fields, huge strings, bad UTF-8,
binary frames, frames over 64 KiB, messages before `hello`, hellos with bad
tokens and bad devices). `Fuzzer.play` sends one scenario on a new connection
and checks each answer against `acceptable`, a reading of the spec that
tracks what the connection is (logged in or not, how many bad messages it
sent). Where the spec leaves a choice to the implementer (extra fields, a
`seq` that is neither a number nor a string, names with odd characters), every
reasonable answer is accepted; a crash, a missing answer or a wrong close
code never is.

`HeartbeatProbe` is a healthy device that measures its heartbeat round trips
meanwhile, in a process of its own.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import multiprocessing.queues
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

MAX_FRAME = 64 * 1024
KINDS = ("desktop", "phone", "tablet", "glasses", "browser", "other")
TYPES = ("hello", "acquire", "heartbeat", "call_start", "call_end", "logout")
#: Answers that close the connection, with their close code.
CLOSING = {
    "error:unauthorized": 4401,
    "error:no_license": 4403,
    "error:too_large": 1009,
    "error:rate_limited": 4429,
    "error:hello_timeout": 4408,
    "bye": 1000,
}
BAD_MESSAGES_TO_CLOSE = 5
#: Frames the server pushes on its own; never the answer to a frame.
PUSHES = frozenset({"availability", "queued"})
#: The longest the server may take to answer one frame.
ANSWER_TIMEOUT = 5.0
#: The longest the healthy device's process may take to start and log in.
STARTUP_TIMEOUT = 20.0
#: Characters that break naive code: lone surrogates, NUL, controls,
#: bidi overrides, BOM, non-characters, the highest code point.
ODD_CHARACTERS = [
    "\ud800",
    "\udfff",
    "\x00",
    "\x1b",
    "\x7f",
    "\u0085",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\\",
    '"',
    "é",
    "€",
    "😀",
]
#: Byte sequences that are not UTF-8: a lone continuation byte, invalid start
#: bytes, an overlong slash, a UTF-8-encoded surrogate, a truncated sequence,
#: a code point above U+10FFFF.
INVALID_UTF8 = [
    b"\x80",
    b"\xff",
    b"\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\xc3\x28",
]


class Deep(list[Any]):
    """Stands for a JSON array nested too deep to build as Python values."""


NOT_JSON = object()


@dataclass(frozen=True)
class Frame:
    """One frame as sent: its bytes, whether binary, and what it means as JSON."""

    family: str
    payload: bytes
    binary: bool = False
    value: Any = NOT_JSON

    @property
    def utf8(self) -> bool:
        try:
            self.payload.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def __repr__(self) -> str:
        shown = self.payload[:160] + (b"..." if len(self.payload) > 160 else b"")
        kind = "binary" if self.binary else "text"
        return f"Frame({self.family}, {kind}, {len(self.payload)} bytes: {shown!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints falsifying examples with this


@dataclass(frozen=True)
class Tokens:
    """The tokens a fuzz may use: users of each license model, never the probe's."""

    seat: str
    named: str
    none: str

    def model(self, token: Any) -> str | None:
        models = {self.seat: "seat", self.named: "named", self.none: "none"}
        return models.get(token) if isinstance(token, str) else None


@dataclass(frozen=True)
class Scenario:
    login: str | None  # "seat" or "named": a good hello first
    frames: list[Frame]


# Strategies.


def text_frame(family: str, value: Any, *, ascii_only: bool = True, **dumps: Any) -> Frame:
    text = json.dumps(value, ensure_ascii=ascii_only, **dumps)
    return Frame(family, text.encode("utf-8", "surrogatepass"), value=value)


odd_text = st.text(st.characters() | st.sampled_from(ODD_CHARACTERS), max_size=24)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | odd_text
    | st.sampled_from(TYPES)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=10,
)
printable_ids = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64
)


def devices() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"id": printable_ids | odd_text, "kind": st.sampled_from(KINDS)},
        optional={"name": st.text(max_size=40) | odd_text},
    )


def messages(tokens: Tokens) -> st.SearchStrategy[dict[str, Any]]:
    """Messages of the spec's shape, with good and bad tokens."""
    flags = {"takeover": st.booleans(), "queue": st.booleans()}
    any_token = st.sampled_from([tokens.seat, tokens.named, tokens.none]) | st.text(max_size=50)
    call_ids = st.sampled_from(["c1", "c2"]) | printable_ids | odd_text
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("hello"), "token": any_token, "device": devices()}, optional=flags
        ),
        st.fixed_dictionaries({"type": st.just("acquire")}, optional=flags),
        st.fixed_dictionaries(
            {"type": st.just("heartbeat")},
            optional={"seq": st.integers(-(2**63), 2**63) | odd_text},
        ),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["call_start", "call_end"]), "call_id": call_ids}
        ),
        st.just({"type": "logout"}),
    )


@st.composite
def mutated(draw: st.DrawFn, tokens: Tokens) -> dict[str, Any]:
    """A message with a field dropped, retyped or added, at the top or in `device`."""
    message = dict(draw(messages(tokens)))
    target = message
    if "device" in message and draw(st.booleans()):
        target = message["device"] = dict(message["device"])
    how = draw(st.sampled_from(["drop", "retype", "extra", "type"]))
    keys = sorted(target)
    if how == "drop" and keys:
        del target[draw(st.sampled_from(keys))]
    elif how == "retype" and keys:
        target[draw(st.sampled_from(keys))] = draw(json_values)
    elif how == "extra":
        target.update(draw(st.dictionaries(odd_text, json_values, min_size=1, max_size=3)))
    else:
        near_misses = [
            "Hello",
            " hello",
            "hello\x00",
            "HEARTBEAT",
            "heartbeat ",
            "log out",
            "call-start",
            "",
            "welcome",
            "error",
        ]
        message["type"] = draw(st.sampled_from(near_misses) | json_values)
    return message


def json_frames(tokens: Tokens) -> st.SearchStrategy[Frame]:
    layouts = st.sampled_from([{}, {"indent": 2}, {"separators": (",", ":")}])
    return st.builds(
        lambda family_value, ascii_only, layout: text_frame(
            family_value[0], family_value[1], ascii_only=ascii_only, **layout
        ),
        st.tuples(st.just("valid"), messages(tokens))
        | st.tuples(st.just("mutated"), mutated(tokens))
        | st.tuples(st.just("random_json"), json_values),
        st.booleans(),
        layouts,
    )


def _not_json(text: str) -> Frame:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = NOT_JSON
    return Frame("not_json", text.encode("utf-8", "surrogatepass"), value=value)


garbage = st.sampled_from(
    [
        "",
        " ",
        "{",
        "}",
        "{]",
        '{"type":',
        "{'type': 'hello'}",
        "null",
        "NaN",
        "[]",
        '{"type":"heartbeat"}{"type":"heartbeat"}',
        '{"type":"heartbeat",}',
        "\x00",
        "\ufeff{}",
        "1" * 4000,
        "-",
        "tru",
        '"\\ud800"',
        '{"type":"\\u0000"}',
    ]
) | st.text(max_size=200)


@st.composite
def huge_strings(draw: st.DrawFn, tokens: Tokens) -> Frame:
    """A message with one string field made long, below or above the frame limit."""
    message = dict(draw(messages(tokens)))
    char = draw(st.sampled_from(["a", "é", "€", "😀", "\\", "\x00", "\ud800"]))
    length = draw(st.integers(1_000, 40_000))
    key = draw(st.sampled_from(["token", "device.name", "device.id", "call_id", "seq", "pad"]))
    if key.startswith("device."):
        device = message["device"] = dict(message.get("device", {"id": "x", "kind": "phone"}))
        device[key.removeprefix("device.")] = char * length
    else:
        message[key] = char * length
    return text_frame("huge_string", message, ascii_only=draw(st.booleans()))


@st.composite
def sized(draw: st.DrawFn) -> Frame:
    """A frame of an exact size around the 64 KiB limit, or far over it."""
    size = draw(
        st.sampled_from([MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1])
        | st.integers(MAX_FRAME + 1, 4 * MAX_FRAME)
        | st.just(1_200_000)
    )
    char = draw(st.sampled_from(["a", "€"]))
    head = b'{"type":"heartbeat","pad":"'
    room = size - len(head) - 2
    pad = char * (room // len(char.encode())) + "a" * (room % len(char.encode()))
    payload = head + pad.encode() + b'"}'
    assert len(payload) == size
    family = "oversize" if size > MAX_FRAME else "at_limit"
    if draw(st.integers(0, 4)) == 0:
        return Frame(family, payload, binary=True)
    return Frame(family, payload, value={"type": "heartbeat", "pad": pad})


@st.composite
def deep(draw: st.DrawFn) -> Frame:
    """Arrays nested thousands deep, at the top or in a field, under the limit."""
    depth = draw(st.integers(1, 30_000))
    nested = b"[" * depth + b"]" * depth
    where = draw(st.sampled_from(["top", "extra", "device", "seq"]))
    if where == "top":
        return Frame("deep", nested, value=Deep())
    if where == "device":
        head = b'{"type":"hello","token":"x","device":'
        return Frame(
            "deep", head + nested + b"}", value={"type": "hello", "token": "x", "device": Deep()}
        )
    key = b"x" if where == "extra" else b"seq"
    value = {"type": "heartbeat", key.decode(): Deep()}
    return Frame("deep", b'{"type":"heartbeat","' + key + b'":' + nested + b"}", value=value)


@st.composite
def bad_utf8(draw: st.DrawFn, tokens: Tokens) -> Frame:
    good = json.dumps(draw(messages(tokens))).encode()
    at = draw(st.integers(0, len(good)))
    return Frame("bad_utf8", good[:at] + draw(st.sampled_from(INVALID_UTF8)) + good[at:])


def binary(tokens: Tokens) -> st.SearchStrategy[Frame]:
    as_json = messages(tokens).map(lambda m: json.dumps(m).encode())
    data = st.binary(max_size=64) | as_json
    return st.builds(lambda payload: Frame("binary", payload, binary=True), data)


def hellos(tokens: Tokens) -> st.SearchStrategy[Frame]:
    """Hellos with a good token and a device of odd fields."""
    device = st.fixed_dictionaries(
        {"id": printable_ids | odd_text, "kind": st.sampled_from(KINDS) | odd_text},
        optional={"name": odd_text | st.text(max_size=200)},
    )
    token = st.sampled_from([tokens.seat, tokens.named, tokens.named, tokens.none])
    hello = st.fixed_dictionaries(
        {"type": st.just("hello"), "token": token, "device": device},
        optional={"takeover": st.booleans(), "queue": st.booleans()},
    )
    return st.builds(
        lambda message, ascii_only: text_frame("hello", message, ascii_only=ascii_only),
        hello,
        st.booleans(),
    )


def frames(tokens: Tokens) -> st.SearchStrategy[Frame]:
    return st.one_of(
        json_frames(tokens),
        json_frames(tokens),
        hellos(tokens),
        garbage.map(_not_json),
        huge_strings(tokens),
        sized(),
        deep(),
        bad_utf8(tokens),
        binary(tokens),
    )


def scenarios(tokens: Tokens) -> st.SearchStrategy[Scenario]:
    return st.builds(
        Scenario,
        st.sampled_from([None, None, "seat", "named"]),
        st.lists(frames(tokens), min_size=1, max_size=6),
    )


# What the spec says.


@dataclass
class Connection:
    """What the oracle knows of one connection."""

    model: str | None = None  # the license model, once authenticated
    bad: int = 0  # bad_message answers so far (all within a minute)


def _is_text(text: str) -> bool:
    """Without lone surrogates or NUL, which the server may refuse in any text."""
    return not any("\ud800" <= ch <= "\udfff" or ch == "\x00" for ch in text)


def _plain(text: Any, longest: int) -> bool | None:
    """A string field: False if not a string, True if a short printable ASCII
    one, None (the spec leaves it open) if empty, long or of odd characters."""
    if not isinstance(text, str):
        return False
    return True if 1 <= len(text) <= longest and _ascii_printable(text) else None


def _ascii_printable(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def _flags(message: dict[str, Any]) -> bool | None:
    verdict: bool | None = True
    for key in ("takeover", "queue"):
        if key in message and not isinstance(message[key], bool):
            verdict = None if message[key] is None else False
            if verdict is False:
                return False
    return verdict


def _worst(*verdicts: bool | None) -> bool | None:
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _device(device: Any) -> bool | None:
    if not isinstance(device, dict):
        return False
    ident = device.get("id")
    if not isinstance(ident, str) or not 1 <= len(ident) <= 64:
        return False
    if any(ch < " " or ch == "\x7f" for ch in ident):
        return False
    id_verdict = True if _ascii_printable(ident) else None
    if device.get("kind") not in KINDS:
        return False
    name_verdict: bool | None = True
    if "name" in device:
        name = device["name"]
        if not isinstance(name, str):
            name_verdict = None if name is None else False
        elif len(name) > 128 or not _ascii_printable(name):
            name_verdict = None
    extra = None if set(device) - {"id", "kind", "name"} else True
    return _worst(id_verdict, name_verdict, extra)


def _fields(message: dict[str, Any]) -> bool | None:
    """Whether a message of a known type has good fields (None: the spec's choice)."""
    kind = message["type"]
    known = {
        "hello": {"type", "token", "device", "takeover", "queue"},
        "acquire": {"type", "takeover", "queue"},
        "heartbeat": {"type", "seq"},
        "call_start": {"type", "call_id"},
        "call_end": {"type", "call_id"},
        "logout": {"type"},
    }[kind]
    extra = None if set(message) - known else True
    if kind == "hello":
        return _worst(_device(message.get("device")), _flags(message), extra)
    if kind == "acquire":
        return _worst(_flags(message), extra)
    if kind == "heartbeat":
        seq = message.get("seq")
        if "seq" not in message or (isinstance(seq, int | str) and not isinstance(seq, bool)):
            good = True if not isinstance(seq, str) or _is_text(seq) else None
            return _worst(good, extra)
        return _worst(None, extra)  # a seq of another type: echo it or refuse it
    if kind in ("call_start", "call_end"):
        return _worst(_plain(message.get("call_id"), 128), extra)
    return extra


def _login_answers(model: str | None, message: dict[str, Any]) -> set[str]:
    if model == "named":
        return {"welcome"}
    if model == "seat":
        queued = {"queued"} if message.get("queue") is True else set()
        return {"welcome", "error:already_logged_in", "error:seat_occupied", *queued}
    return {"error:no_license"}


def acceptable(frame: Frame, connection: Connection, tokens: Tokens) -> set[str]:
    """The answers the spec allows to `frame` on `connection`.

    An answer is a message type (`welcome`, `heartbeat_ack`...), `error:<code>`,
    or `closed:<code>` for a close without a message.
    """
    if len(frame.payload) > MAX_FRAME:
        # A reset instead of the close frame: the server closes while the
        # client still sends the rest of a frame it will never read.
        oversize = {"error:too_large", "closed:1009", "closed:1006"}
        return oversize if frame.binary or frame.utf8 else oversize | {"closed:1007"}
    if frame.binary:
        return {"error:bad_message"}
    if not frame.utf8:
        return {"closed:1007", "error:bad_message"}
    value = frame.value
    if value is NOT_JSON or not isinstance(value, dict) or value.get("type") not in TYPES:
        return {"error:bad_message"}
    verdict = _fields(value)
    if value["type"] == "hello" and verdict is not False:
        token_good = isinstance(value.get("token"), str) and _is_text(value["token"])
        verdict = _worst(verdict, True if token_good else None)
    bad = {"error:bad_message"}
    if connection.model is None:
        if value["type"] != "hello":
            good = {"error:not_logged_in"}
            return good if verdict is True else good | bad
        model = tokens.model(value.get("token"))
        unauthorized = {"error:unauthorized"}
        good = _login_answers(model, value) if model is not None else unauthorized
        if verdict is False:
            return bad | (unauthorized if model is None else set())
        return good if verdict is True else good | bad
    good = {
        "hello": bad,
        "acquire": _login_answers(connection.model, value),
        "heartbeat": {"heartbeat_ack"},
        "call_start": {"call_started", "error:call_in_progress", "error:not_logged_in"},
        "call_end": {"call_ended", "error:unknown_call", "error:not_logged_in"},
        "logout": {"bye"},
    }[value["type"]]
    if verdict is False:
        return bad
    return good if verdict is True else good | bad


def close_code(answer: str, connection: Connection) -> int | None:
    """The close that must follow `answer` (None: the connection stays open)."""
    if answer.startswith("closed:"):
        return int(answer.removeprefix("closed:"))
    if answer == "error:bad_message":
        return 4400 if connection.bad + 1 >= BAD_MESSAGES_TO_CLOSE else None
    return CLOSING.get(answer)


# Playing scenarios against a server.


class Violation(AssertionError):
    """An answer the spec does not allow; `kind` groups alike ones."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Figures:
    frames: int = 0
    connections: int = 0
    by_family: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)  # by kind
    examples: dict[str, str] = field(default_factory=dict)  # the first of each kind


@dataclass(frozen=True)
class Target:
    """A server prepared for fuzzing: a domain with a user of each license model."""

    base_url: str
    tokens: Tokens
    probe_token: str

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/ws/device"


def prepare(base_url: str, admin_token: str, domain_id: str) -> Target:
    """Create the fuzz's domain on a running server, through the admin API."""
    api = f"{base_url}/api/v1/domains"
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(headers=headers, trust_env=False, timeout=10.0) as http:

        def created(path: str, body: Any = None) -> Any:
            answer = http.post(f"{api}{path}", json=body)
            assert answer.status_code == 201, answer.text
            return answer.json()

        created(
            "",
            {
                "id": domain_id,
                "name": "Fuzz",
                "plan": "enterprise",
                "named_licenses": 10,
                "seat_licenses": 10,
            },
        )
        created(f"/{domain_id}/pools", {"id": "desk", "name": "Desk", "seats": 2})

        def token(license: dict[str, Any]) -> str:
            n = len(http.get(f"{api}/{domain_id}/users").json())
            user = created(
                f"/{domain_id}/users",
                {"email": f"u{n}@example.com", "name": f"User {n}", "license": license},
            )
            return str(created(f"/{domain_id}/users/{user['id']}/tokens")["token"])

        tokens = Tokens(
            seat=token({"model": "seat", "pool": "desk"}),
            named=token({"model": "named"}),
            none=token({"model": "none"}),
        )
        return Target(base_url, tokens, probe_token=token({"model": "named"}))


class Fuzzer:
    """Plays scenarios against `target`; `strict` raises `Violation` at the
    first answer the spec does not allow (for hypothesis to shrink), else
    records it in `figures` and goes on."""

    def __init__(self, target: Target, *, strict: bool) -> None:
        self.target = target
        self.strict = strict
        self.figures = Figures()

    def play(self, scenario: Scenario) -> None:
        try:
            self._play(scenario)
        except Violation as violation:
            if self.strict:
                raise
            self.figures.violations[violation.kind] += 1
            self.figures.examples.setdefault(violation.kind, str(violation))

    def _play(self, scenario: Scenario) -> None:
        with connect(
            self.target.ws_url,
            proxy=None,
            compression=None,
            ping_interval=None,
            max_size=None,
            open_timeout=10,
            close_timeout=2,
        ) as ws:
            self.figures.connections += 1
            connection = Connection()
            if scenario.login is not None:
                # Takeover: the same user's last connection may not be closed yet.
                token = getattr(self.target.tokens, scenario.login)
                device = {"id": f"fuzz-{scenario.login}", "kind": "desktop"}
                ws.send(
                    json.dumps(
                        {"type": "hello", "token": token, "device": device, "takeover": True}
                    )
                )
                answer, message = self._answer(ws, {"welcome"})
                if answer != "welcome":
                    raise Violation(f"a good hello got {answer} {message}", "good hello refused")
                connection.model = scenario.login
            for number, frame in enumerate(scenario.frames):
                if not self._exchange(ws, frame, connection, number):
                    return  # closed, as it should be
            self._still_open(ws, connection)

    def _exchange(
        self, ws: ClientConnection, frame: Frame, connection: Connection, number: int
    ) -> bool:
        """Send one frame and check the answer; False once the connection closed."""
        allowed = acceptable(frame, connection, self.target.tokens)
        self.figures.frames += 1
        self.figures.by_family[frame.family] += 1
        try:
            ws.send(frame.payload, text=not frame.binary)
        except (ConnectionClosed, OSError):
            pass  # the server closed it; the close code tells why
        answer, message = self._answer(ws, allowed)
        self.figures.answers[answer] += 1
        where = f"frame {number} {frame!r}"
        kind = f"{frame.family} frame answered {answer}"
        if answer not in allowed:
            raise Violation(
                f"{where}: got {answer} {message or ''}, expected one of {sorted(allowed)}", kind
            )
        if answer == "heartbeat_ack" and isinstance(frame.value.get("seq"), int | str):
            # As JSON carried it: an escaped surrogate pair arrives as one character.
            sent = json.loads(json.dumps(frame.value["seq"]))
            if message is None or message.get("seq") != sent:
                raise Violation(f"{where}: the ack does not echo seq: {message}", "seq not echoed")
        expected_close = close_code(answer, connection)
        if answer == "error:bad_message":
            connection.bad += 1
        elif answer in ("welcome", "error:already_logged_in", "error:seat_occupied", "queued"):
            connection.model = connection.model or self.target.tokens.model(frame.value["token"])
        if answer.startswith("closed:"):
            return False
        if expected_close is None:
            return True
        got = self._close(ws)
        if got != expected_close:
            raise Violation(
                f"{where}: {answer} then close {got}, expected {expected_close}",
                f"{answer} then close {got} instead of {expected_close}",
            )
        return False

    def _answer(self, ws: ClientConnection, allowed: set[str]) -> tuple[str, dict[str, Any] | None]:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            try:
                raw = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Violation(f"no answer within {ANSWER_TIMEOUT} s", "no answer") from None
            except ConnectionClosed as closed:
                return f"closed:{1006 if closed.rcvd is None else closed.rcvd.code}", None
            message = json.loads(raw)
            kind = message.get("type")
            if kind in PUSHES and kind not in allowed:
                continue
            if kind == "error":
                return f"error:{message.get('code')}", self._checked_error(message)
            if kind == "session_ended":
                return f"session_ended:{message.get('reason')}", message
            return str(kind), message

    @staticmethod
    def _checked_error(error: dict[str, Any]) -> dict[str, Any]:
        shape = (
            isinstance(error.get("code"), str),
            isinstance(error.get("message"), str),
            isinstance(error.get("retryable"), bool),
        )
        if not all(shape) or not error["message"].strip():
            raise Violation(f"an error not of the spec's shape: {error}", "error shape")
        return error

    def _close(self, ws: ClientConnection) -> int:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            try:
                ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Violation(f"not closed within {ANSWER_TIMEOUT} s", "not closed") from None
            except ConnectionClosed as closed:
                return 1006 if closed.rcvd is None else closed.rcvd.code

    def _still_open(self, ws: ClientConnection, connection: Connection) -> None:
        """After the frames, the connection still answers a heartbeat."""
        ws.send(json.dumps({"type": "heartbeat", "seq": "probe"}))
        answer, message = self._answer(ws, set())
        expected = "heartbeat_ack" if connection.model else "error:not_logged_in"
        if answer != expected:
            raise Violation(
                f"after the frames, a heartbeat got {answer} {message or ''}",
                f"closed or confused after the frames: {answer}",
            )


# The healthy device.


@dataclass
class Latency:
    """Heartbeat round trips, in seconds."""

    samples: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    def summary(self) -> str:
        return (
            f"{len(self.samples)} heartbeats, p50 {self.p50 * 1000:.1f} ms, "
            f"p99 {self.p99 * 1000:.1f} ms, max {max(self.samples) * 1000:.1f} ms"
        )


class HeartbeatProbe:
    """A healthy named device that heartbeats every `period` seconds and records
    each round trip, until `stop`. It runs in a process of its own, so that
    the fuzz's work in this one does not show in its figures. Entering waits
    until it is logged in (or failed, which `stop` reports)."""

    def __init__(self, target: Target, period: float = 0.05) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = context.Event()
        self._results: multiprocessing.queues.Queue[tuple[list[float], str | None]]
        self._results = context.Queue()
        self._process = context.Process(
            target=_probe,
            args=(
                target.ws_url,
                target.probe_token,
                period,
                self._stop,
                self._ready,
                self._results,
            ),
            name="heartbeat-probe",
            daemon=True,
        )

    def __enter__(self) -> HeartbeatProbe:
        self._process.start()
        self._ready.wait(STARTUP_TIMEOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._process.join(ANSWER_TIMEOUT * 2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def stop(self) -> Latency:
        self._stop.set()
        try:
            samples, error = self._results.get(timeout=ANSWER_TIMEOUT * 4)
        finally:
            self.__exit__()
        if error is not None:
            raise AssertionError(f"the healthy device failed: {error}")
        assert samples, "the healthy device measured nothing"
        return Latency(samples)


def _probe(url: str, token: str, period: float, stop: Any, ready: Any, results: Any) -> None:
    samples: list[float] = []
    error = None
    try:
        with connect(url, proxy=None, compression=None, ping_interval=None, open_timeout=10) as ws:
            device = {"id": "healthy", "kind": "desktop"}
            ws.send(json.dumps({"type": "hello", "token": token, "device": device}))
            while json.loads(ws.recv(timeout=ANSWER_TIMEOUT))["type"] != "welcome":
                pass
            ready.set()
            seq = 0
            while not stop.is_set():
                seq += 1
                sent = time.monotonic()
                ws.send(json.dumps({"type": "heartbeat", "seq": seq}))
                while True:
                    message = json.loads(ws.recv(timeout=ANSWER_TIMEOUT))
                    if message.get("type") == "heartbeat_ack" and message.get("seq") == seq:
                        break
                samples.append(time.monotonic() - sent)
                stop.wait(period)  # pacing, under the rate limit
    except Exception as exc:  # reported by HeartbeatProbe.stop
        error = repr(exc)
        ready.set()
    results.put((samples, error))


@dataclass
class Campaign:
    """A long fuzz's figures."""

    figures: Figures
    baseline: Latency  # the healthy device's heartbeats before the fuzz
    during: Latency  # and during it
    seconds: float


def campaign(target: Target, frames: int, budget: float, baseline_seconds: float) -> Campaign:
    """Play scenarios until `frames` frames were sent or `budget` seconds
    passed, recording every answer the spec does not allow instead of
    stopping at the first; measure the healthy device before and during."""
    from hypothesis import HealthCheck, given, settings

    with HeartbeatProbe(target) as probe:
        time.sleep(baseline_seconds)  # the measurement's length
        baseline = probe.stop()
    fuzzer = Fuzzer(target, strict=False)
    started = time.monotonic()

    @settings(
        max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def play(data: st.DataObject) -> None:
        scenario = data.draw(scenarios(target.tokens))
        if fuzzer.figures.frames < frames and time.monotonic() - started < budget:
            fuzzer.play(scenario)

    with HeartbeatProbe(target) as probe:
        for _ in range(1 + frames // 100):  # batches of 500 scenarios: about 1,500 frames
            if fuzzer.figures.frames >= frames or time.monotonic() - started > budget:
                break
            play()
        during = probe.stop()
    return Campaign(fuzzer.figures, baseline, during, time.monotonic() - started)

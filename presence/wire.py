"""The device protocol's frames, parsed and written in this one place.

:func:`parse` turns a client's text frame into one of the message types below
or raises :exc:`BadMessage`; the ``*_frame`` functions write the server's
frames. Times go out as ISO 8601 UTC strings, durations as seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .core.model import DEVICE_KINDS, Device, Lease, Pool, User
from .core.seats import Availability

MAX_FRAME = 64 * 1024


class BadMessage(Exception):
    """A frame the server cannot use; ``code`` is ``bad_message`` or ``too_large``."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Hello:
    """``token``, or for federated login ``domain`` and ``id_token`` (``token`` is
    then empty)."""

    token: str
    device: Device
    takeover: bool = False
    queue: bool = False
    domain: str | None = None
    id_token: str | None = None


@dataclass(frozen=True, slots=True)
class Acquire:
    takeover: bool = False
    queue: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeat:
    seq: int | str | None = None


@dataclass(frozen=True, slots=True)
class CallStart:
    call_id: str


@dataclass(frozen=True, slots=True)
class CallEnd:
    call_id: str


@dataclass(frozen=True, slots=True)
class Logout:
    pass


ClientMessage = Hello | Acquire | Heartbeat | CallStart | CallEnd | Logout


def parse(frame: str | bytes) -> ClientMessage:
    """Parse one device frame; raise :exc:`BadMessage` saying what is wrong."""
    data = parse_object(frame)
    kind = data.get("type")
    if kind == "hello":
        # A token that cannot be one is refused as unauthorized, like a wrong one.
        token, domain, id_token = (_credential(data, k) for k in ("token", "domain", "id_token"))
        federated = "id_token" in data and "token" not in data
        return Hello(
            token=token or "",
            device=_device(data.get("device")),
            takeover=_flag(data, "takeover"),
            queue=_flag(data, "queue"),
            domain=(domain or "") if federated else None,
            id_token=(id_token or "") if federated else None,
        )
    if kind == "acquire":
        return Acquire(takeover=_flag(data, "takeover"), queue=_flag(data, "queue"))
    if kind == "heartbeat":
        seq = data.get("seq")
        if isinstance(seq, str):
            return Heartbeat(_text(data, "seq", 0, MAX_FRAME))
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise BadMessage("heartbeat.seq must be an integer or a string.")
        return Heartbeat(seq)
    if kind == "call_start":
        return CallStart(_text(data, "call_id", 1, 128))
    if kind == "call_end":
        return CallEnd(_text(data, "call_id", 1, 128))
    if kind == "logout":
        return Logout()
    raise BadMessage(f"Unknown message type {str(kind)[:64]!r}.")


def _credential(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and is_text(value) else None


def parse_object(frame: str | bytes) -> dict[str, Any]:
    """The JSON object a client's frame holds, on any endpoint; raise
    :exc:`BadMessage` saying what is wrong (``too_large`` over :data:`MAX_FRAME`)."""
    if _size(frame) > MAX_FRAME:
        raise BadMessage(f"Frames are limited to {MAX_FRAME} bytes.", "too_large")
    if isinstance(frame, bytes):
        raise BadMessage("Frames must be text, not binary.")
    try:
        data = json.loads(frame)
    except ValueError:
        raise BadMessage("The frame is not JSON.") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise BadMessage("The frame's JSON nests too deep.") from None
    if not isinstance(data, dict):
        raise BadMessage("The frame must be a JSON object.")
    return data


def _size(frame: str | bytes) -> int:
    if isinstance(frame, bytes) or len(frame) <= MAX_FRAME // 4:  # no character is over 4 bytes
        return len(frame)
    return len(frame.encode(errors="surrogatepass"))


def _text(data: dict[str, Any], key: str, shortest: int, longest: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not shortest <= len(value) <= longest:
        raise BadMessage(f"{key} must be a string of {shortest} to {longest} characters.")
    if not is_text(value):
        raise BadMessage(f"{key} holds a lone surrogate (\\ud800-\\udfff) or NUL, not text.")
    return value


def is_text(text: str) -> bool:
    """Whether ``text`` can be stored as text: real Unicode (JSON escapes can
    smuggle in lone surrogates) without NUL (PostgreSQL's text refuses it)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise BadMessage(f"{key} must be true or false.")
    return value


def _device(data: Any) -> Device:
    if not isinstance(data, dict):
        raise BadMessage("device must be an object {id, kind, name?}.")
    device_id = _text(data, "id", 1, 64)
    if not device_id.isprintable():
        raise BadMessage("device.id must be printable characters only.")
    kind = data.get("kind")
    if kind not in DEVICE_KINDS:
        raise BadMessage(f"device.kind must be one of {', '.join(DEVICE_KINDS)}.")
    name = _text(data, "name", 0, 128) if "name" in data else ""
    return Device(device_id, kind, name)


def iso(at: float) -> str:
    """A time as ISO 8601 UTC with milliseconds: ``2026-11-27T10:00:00.000Z``."""
    whole = int(at)
    millis = int((at - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


# Built once: json.dumps with these options builds a new encoder for every frame.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(message: dict[str, Any]) -> str:
    return _ENCODER.encode(message)


def license_view(lease: Lease, pool: Pool | None) -> dict[str, Any]:
    if pool is None:
        return {"model": "named"}
    return {
        "model": "seat",
        "pool": {"id": pool.id, "name": pool.name},
        "seat": lease.seat,
        "lease_id": lease.id,
        "fencing_token": lease.fencing_token,
    }


def welcome_frame(
    session_id: str,
    user: User,
    lease: Lease,
    pool: Pool | None,
    heartbeat_interval: float,
    lease_ttl: float,
) -> str:
    return encode(
        {
            "type": "welcome",
            "session_id": session_id,
            "user": {"id": user.id, "name": user.name},
            "license": license_view(lease, pool),
            "heartbeat_interval": heartbeat_interval,
            "lease_ttl": lease_ttl,
        }
    )


def availability_frame(availability: Availability) -> str:
    a = availability
    return encode(
        {
            "type": "availability",
            "pool": a.pool,
            "seats": a.seats,
            "occupied": a.occupied,
            "in_call": a.in_call,
            "free": a.free,
            "queued": a.queued,
        }
    )


def queued_frame(pool: str, position: int) -> str:
    return encode({"type": "queued", "pool": pool, "position": position})


def heartbeat_ack_frame(seq: int | str | None, expires_in: float) -> str:
    return encode({"type": "heartbeat_ack", "seq": seq, "expires_in": expires_in})


def call_started_frame(call_id: str, started_at: float) -> str:
    return encode({"type": "call_started", "call_id": call_id, "started_at": iso(started_at)})


def call_ended_frame(call_id: str, duration: float) -> str:
    return encode({"type": "call_ended", "call_id": call_id, "duration": round(duration, 3)})


def session_ended_frame(reason: str, message: str) -> str:
    return encode({"type": "session_ended", "reason": reason, "message": message})


# Errors after which the same request may succeed later.
RETRYABLE = frozenset(
    {"seat_occupied", "already_logged_in", "rate_limited", "hello_timeout", "unavailable"}
)


def error_frame(code: str, message: str) -> str:
    retryable = code in RETRYABLE
    return encode({"type": "error", "code": code, "message": message, "retryable": retryable})


def bye_frame() -> str:
    return encode({"type": "bye"})

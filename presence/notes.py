"""What one node tells every node (itself included), as types, with one codec.

A transaction publishes notes with :meth:`~presence.storage.Tx.notify`; they
reach every node after it commits, in the order of the commits, and never if
it rolls back. Each note asks a node to read something again or to do
something once, or says what something is now, so receiving one twice is
harmless. Between processes they travel as the JSON of
:func:`encode`, read back by :func:`decode`; in one process they are passed
as they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from .core.model import Pool
from .core.seats import Occupancy


@dataclass(frozen=True, slots=True)
class PoolChanged:
    """A pool's seats, queue or settings changed: announce its availability
    again, as ``occupancy`` says if the change knew it, else as read."""

    kind: ClassVar[str] = "pool"
    domain: str
    pool: str
    occupancy: Occupancy | None = None


@dataclass(frozen=True, slots=True)
class NamedChanged:
    """A named user's devices changed (for wallboards)."""

    kind: ClassVar[str] = "named"
    domain: str
    user: str


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    """A session's lease was ended for ``reason`` by someone else's transaction."""

    kind: ClassVar[str] = "end"
    session: str
    reason: str


@dataclass(frozen=True, slots=True)
class UserEnded:
    """Every session of a user ends for ``reason`` (its license changed, it was deleted)."""

    kind: ClassVar[str] = "user"
    user: str
    reason: str


@dataclass(frozen=True, slots=True)
class QueueGranted:
    """A waiting session was granted its seat from the queue."""

    kind: ClassVar[str] = "granted"
    session: str


@dataclass(frozen=True, slots=True)
class QueueRefused:
    """A waiting session was taken out of the queue with an error."""

    kind: ClassVar[str] = "refused"
    session: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class EventsLogged:
    """Events added to a domain's log, as the events API shows them."""

    kind: ClassVar[str] = "events"
    domain: str
    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    """A token was revoked: every session and wallboard opened with it ends."""

    kind: ClassVar[str] = "token_revoked"
    domain: str
    token: str


@dataclass(frozen=True, slots=True)
class WebhooksChanged:
    """A domain's webhook endpoints changed: claim them again, deliver at once."""

    kind: ClassVar[str] = "webhooks"
    domain: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Notes may have been missed (the bus was lost): read the state again."""

    kind: ClassVar[str] = "resync"


Note = (
    PoolChanged
    | NamedChanged
    | LeaseEnded
    | UserEnded
    | QueueGranted
    | QueueRefused
    | EventsLogged
    | TokenRevoked
    | WebhooksChanged
    | Resync
)

_TYPES: dict[str, type[Note]] = {
    cls.kind: cls
    for cls in (
        PoolChanged, NamedChanged, LeaseEnded, UserEnded, QueueGranted, QueueRefused,
        EventsLogged, TokenRevoked, WebhooksChanged, Resync,
    )
}  # fmt: skip
_FIELDS = {kind: tuple(f.name for f in fields(cls)) for kind, cls in _TYPES.items()}


class BadNote(ValueError):
    """A text that is not a note of this version."""


def encode(note: Note) -> str:
    """The note as compact JSON (ASCII, so its length is its size in bytes)."""
    data: dict[str, Any] = {"kind": note.kind}
    for name in _FIELDS[note.kind]:
        data[name] = getattr(note, name)
    if isinstance(note, PoolChanged) and note.occupancy is not None:
        data["occupancy"] = asdict(note.occupancy)
    return json.dumps(data, separators=(",", ":"))


def decode(text: str) -> Note:
    """The note :func:`encode` wrote; raises :exc:`BadNote` for anything else."""
    try:
        data = json.loads(text)
        cls = _TYPES[data["kind"]]
        # A field a node of an earlier version did not send takes its default.
        values = {name: data[name] for name in _FIELDS[cls.kind] if name in data}
        if cls is EventsLogged:
            values["events"] = tuple(values["events"])
        if cls is PoolChanged and values.get("occupancy") is not None:
            occupancy = values["occupancy"]
            values["occupancy"] = Occupancy(
                Pool(**occupancy["pool"]), occupancy["occupied"], occupancy["in_call"],
                tuple(occupancy["queue"]),
            )  # fmt: skip
        return cls(**values)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BadNote(f"not a note: {text[:200]!r}") from exc

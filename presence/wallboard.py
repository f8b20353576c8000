"""The wallboard stream: a snapshot of a domain, then small changes.

A board connects to ``/ws/wallboard`` and sends ``{"type": "hello", "token",
"domain"?}`` (``domain`` is needed only with an admin token of the server);
then it receives, as JSON text frames:

- ``snapshot {domain, presence, events, now}``: the presence snapshot of the
  admin API, the latest events (oldest first) and the server's clock;
- ``pool {pool}``: one pool's entry of the snapshot, after it changed;
- ``pool_removed {pool}``: a pool was deleted;
- ``named {user, devices}``: one named user's devices (none: logged out);
- ``event {event}``: a new event of the log; events here also carry
  ``user {id, name}``;
- ``pong``: the answer to a ``ping`` the board may send to check the line;
- ``error {code, message, retryable}`` just before the server closes the
  board: its ``hello`` was refused (4401 for a bad token), or its token was
  revoked (``unauthorized``, 4401).

Each change is encoded once and sent to every board of the domain.
"""

from __future__ import annotations

import time
from typing import Any

from . import notes, views, wire
from .admin import Snapshot
from .core.seats import PoolBook
from .node.session import Link
from .notes import Note
from .storage import Store


class Board:
    """One connected wallboard. Changes wait in ``backlog`` until its snapshot is sent.

    ``token_id`` is the stored token it was opened with (``None``: the
    configured server admin token): revoking the token closes the board.
    """

    __slots__ = ("link", "domain_id", "token_id", "backlog")

    def __init__(self, link: Link, domain_id: str, token_id: str | None) -> None:
        self.link = link
        self.domain_id = domain_id
        self.token_id = token_id
        self.backlog: list[str] | None = []

    def send(self, frame: str) -> None:
        if self.backlog is not None:
            self.backlog.append(frame)
        else:
            self.link.push(frame)

    def start(self, snapshot: Snapshot) -> None:
        """Send the snapshot, then what changed while it was read."""
        backlog, self.backlog = self.backlog or [], None
        self.send(snapshot_frame(snapshot))
        for frame in backlog:
            self.send(frame)


class Wallboards:
    """The boards connected to this node; a watcher of the node (:mod:`presence.node`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._boards: dict[str, set[Board]] = {}
        self._names: dict[str, dict[str, str]] = {}  # per domain: user id to name
        self.revocations = 0  # token revocations heard; see web/wallboard.py

    def add(self, board: Board) -> None:
        self._boards.setdefault(board.domain_id, set()).add(board)

    def start(self, board: Board, snapshot: Snapshot) -> None:
        """Send a board its snapshot, learning the domain's user names from it."""
        self._names.setdefault(board.domain_id, {}).update(snapshot.names)
        board.start(snapshot)

    def remove(self, board: Board) -> None:
        boards = self._boards.get(board.domain_id, set())
        boards.discard(board)
        if not boards:
            self._boards.pop(board.domain_id, None)
            self._names.pop(board.domain_id, None)

    def watching(self, domain_id: str) -> bool:
        return domain_id in self._boards

    async def pool_changed(self, domain_id: str, pool_id: str, book: PoolBook | None) -> None:
        if book is None:
            self._send(domain_id, {"type": "pool_removed", "pool": pool_id})
        else:
            self._send(domain_id, {"type": "pool", "pool": views.pool_presence_view(book)})

    async def noted(self, note: Note) -> None:
        match note:
            case notes.Resync():  # changes may have been missed: boards reconnect
                for boards in list(self._boards.values()):
                    for board in list(boards):
                        board.link.close(1012)
            case notes.TokenRevoked(domain_id, token_id):
                self.revocations += 1
                revoked = wire.error_frame(
                    "unauthorized", "The token of this wallboard was revoked."
                )
                for board in list(self._boards.get(domain_id, ())):
                    if board.token_id == token_id:
                        board.link.push(revoked)
                        board.link.close(4401)
            case notes.EventsLogged(domain_id, events) if self.watching(domain_id):
                names = await self._names_of(domain_id, {e["user_id"] for e in events})
                for event in events:
                    event = views.named_event_view(event, names)
                    self._send(domain_id, {"type": "event", "event": event})
            case notes.NamedChanged(domain_id, user_id) if self.watching(domain_id):
                async with self.store.transaction() as tx:
                    held = await tx.leases(domain_id, users=[user_id])
                    user = await tx.user(domain_id, user_id)
                named = views.named_view([lease for lease in held if lease.pool is None])
                entry = named[0] if named else {"user": {"id": user_id}, "devices": []}
                if user is not None:
                    entry["user"] = {"id": user.id, "name": user.name}
                self._send(domain_id, {"type": "named", **entry})

    async def _names_of(self, domain_id: str, user_ids: set[str]) -> dict[str, str]:
        """The domain's user names, read again when one of ``user_ids`` is new."""
        names = self._names.setdefault(domain_id, {})
        if not user_ids <= names.keys():
            async with self.store.transaction() as tx:
                names.update({user.id: user.name for user in await tx.users(domain_id)})
        return names

    def _send(self, domain_id: str, message: dict[str, Any]) -> None:
        frame = wire.encode(message)
        for board in list(self._boards.get(domain_id, ())):
            board.send(frame)


def snapshot_frame(snapshot: Snapshot) -> str:
    return wire.encode(
        {
            "type": "snapshot",
            "domain": views.domain_view(snapshot.domain),
            "presence": views.presence_view(snapshot.domain.id, snapshot.books, snapshot.named),
            "events": [
                views.named_event_view(views.event_view(e), snapshot.names) for e in snapshot.events
            ],
            "now": wire.iso(time.time()),
        }
    )

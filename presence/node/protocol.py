"""The device protocol on a node: what each message of a session does.

Every decision runs the core inside one transaction of the user's domain and
moves the session only once it committed, and only if the session still
lives: a session ended meanwhile frees in its own ending whatever the
decision gave it. Ending a session (:meth:`DeviceProtocol.end`) frees what it
holds as the store knows it, never as the session believes it.

Logins that pile up are refused at once with ``unavailable``
(:mod:`.admission`): a ``hello`` so refused is closed 1013 (try again later),
an ``acquire`` stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .. import leases, wire
from ..config import Config
from ..core import seats
from ..core.model import Identity, Lease, Pool, User
from ..core.seats import Decisions, Enqueued, Granted, Refusal, Request
from ..errors import Overloaded, RuleViolation, StorageError
from ..identity import KeysUnavailable, SignInRefused, Verifier
from ..metrics import METRICS
from ..storage import Store, Tx
from ..tokens import hash_token
from .admission import BUDGET, Admission
from .announcer import Announcer
from .session import Link, Phase, Session, Sessions

logger = logging.getLogger(__name__)


class DeviceProtocol:
    """The sessions of this node and what their messages do."""

    def __init__(
        self,
        store: Store,
        config: Config,
        sessions: Sessions,
        announcer: Announcer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.sessions = sessions
        self.announcer = announcer
        self.clock = clock
        # A login waits for its answer in silence: less than its lease's time.
        budget = min(BUDGET, config.lease_ttl / 2)
        self.logins = Admission("node", clock, budget)
        self.decisions = Admission("domain", clock, budget)
        self.stopping = False
        self.unreleased: dict[Session, str] = {}  # ending while the database was away
        self.revocations = 0  # token revocations heard; see _hello
        self.verifier = Verifier(config.oidc_allow_http, clock, config.oidc_refetch_interval)
        self._releasing: set[asyncio.Task[None]] = set()

    def open_session(self, link: Link) -> Session:
        return Session(link, self.sessions, self.clock())

    async def hello(
        self, session: Session, message: wire.Hello, judged: Callable[[bool], None]
    ) -> None:
        """Authenticate a session and log it in.

        ``judged`` is called once the token is judged, with whether it was refused.
        An ID token is verified before the login is admitted: a login that waits
        for its identity provider's keys holds up no other.
        """
        session.last_seen = started = self.clock()
        try:
            signed_in = None if message.id_token is None else await self._verify(message)
            with self.logins.admit(started) as deadline:
                await self._hello(session, message, deadline, judged, signed_in)
        except SignInRefused as exc:
            judged(True)
            session.refuse_login(4401, wire.error_frame("unauthorized", str(exc)))
        except KeysUnavailable as exc:  # the provider's outage: the device tries again
            judged(False)
            session.turn_away(wire.error_frame("unavailable", str(exc)))
        except Overloaded as exc:  # before its decision began: it holds nothing
            session.turn_away(wire.error_frame(exc.code, exc.message))
        finally:
            METRICS.login_seconds.observe(self.clock() - started)

    async def fetch_keys(self, message: wire.Hello) -> None:
        """Fetch the keys the hello's ID token needs, if they may be fetched now:
        before its address's turn to be judged (see :meth:`Verifier.fetch_keys`)."""
        assert message.domain is not None and message.id_token is not None
        identity = await self._identity(message.domain)
        if identity is not None:
            await self.verifier.fetch_keys(identity, message.id_token)

    async def _identity(self, domain_id: str) -> Identity | None:
        async with self.store.transaction() as tx:
            return await tx.identity(domain_id) if domain_id else None

    async def _verify(self, message: wire.Hello) -> tuple[Identity, dict[str, Any]]:
        """The identity provider of the hello's domain, and the ID token's claims."""
        assert message.domain is not None and message.id_token is not None
        identity = await self._identity(message.domain)
        if identity is None:
            raise SignInRefused(
                f"Domain {message.domain[:64]!r} does not sign in with an identity provider."
            )
        return identity, await self.verifier.verify(identity, message.id_token)

    async def _hello(
        self,
        session: Session,
        message: wire.Hello,
        deadline: float | None,
        judged: Callable[[bool], None],
        signed_in: tuple[Identity, dict[str, Any]] | None,
    ) -> None:
        arrived = session.last_seen
        token_id = None
        if signed_in is not None:
            try:
                user: User | None = await self._signed_in_user(*signed_in, deadline)
            except RuleViolation as exc:  # provisioning refused by a licensing rule
                judged(False)
                session.refuse_login(4403, wire.error_frame(exc.code, exc.message))
                return
        else:
            while True:
                heard = self.revocations
                async with self.store.transaction(deadline=deadline) as tx:
                    grant = await tx.use_token(hash_token(message.token))
                    user = None
                    if grant and grant.role == "user" and grant.domain_id and grant.user_id:
                        user = await tx.user(grant.domain_id, grant.user_id)
                # A revocation heard meanwhile may be of this token, and found no
                # session of it to end: check again. From here to authenticating,
                # nothing awaits.
                if self.revocations == heard:
                    break
            token_id = grant.token_id if grant is not None else None
        judged(user is None)
        if user is None:
            text = "The token is missing or not valid."
            session.refuse_login(4401, wire.error_frame("unauthorized", text))
            return
        if user.license.model == "none":
            text = "Your user has no license to log in."
            session.refuse_login(4403, wire.error_frame("no_license", text))
        elif self.stopping:
            session.refuse_login(1001, wire.error_frame("unavailable", "The server is stopping."))
        elif not session.link.gone:
            with self.decisions.admit(arrived, user.domain_id) as deadline:
                session.authenticate(user, message.device, token_id)
                try:
                    await self._login(session, message.takeover, message.queue, deadline)
                except Overloaded:
                    raise
                except StorageError as exc:
                    await session.error(exc.code, exc.message)

    async def _signed_in_user(
        self, identity: Identity, claims: dict[str, Any], deadline: float | None
    ) -> User:
        """The domain's user with the ID token's e-mail address, created if the
        identity provisions users; :exc:`SignInRefused` if there is none."""
        email = claims[identity.email_claim]
        async with self.store.transaction(deadline=deadline) as tx:
            user = await tx.user_by_email(identity.domain_id, email)
        if user is not None:
            return user
        if identity.provision is None:
            raise SignInRefused(
                f"No user of domain {identity.domain_id!r} has the e-mail address {email!r}."
            )
        name = claims.get("name")
        if not (isinstance(name, str) and wire.is_text(name) and 0 < len(name.strip()) <= 200):
            name = email
        async with self.store.transaction(identity.domain_id, deadline=deadline) as tx:
            return await leases.provision(tx, identity, email, name.strip())

    async def acquire(self, session: Session, takeover: bool, queue: bool) -> None:
        """Log in again on a session holding nothing; it stays open whatever the answer."""
        assert session.user is not None
        if session.lease is not None:  # holding already
            self._welcome(session, session.lease)
            return
        try:
            with self.decisions.admit(self.clock(), session.user.domain_id) as deadline:
                await self._login(session, takeover, queue, deadline)
        except StorageError as exc:
            await session.error(exc.code, exc.message)

    async def _login(
        self, session: Session, takeover: bool, queue: bool, deadline: float | None
    ) -> None:
        """Decide a login, begun by ``deadline``: a welcome, a queue place or an error."""
        user = session.user
        assert user is not None
        domain_id = user.domain_id
        changed: str | None = None
        outcome: Granted | Refusal | Enqueued | None = None
        try:
            async with self.store.transaction(domain_id, deadline=deadline) as tx:
                if not session.live or session.link.gone:
                    return  # work for a connection already gone is dropped
                now_user = await tx.user(domain_id, user.id)
                if now_user is None:
                    changed = seats.USER_DELETED
                elif now_user.license != user.license:
                    changed = seats.LICENSE_CHANGED
                else:
                    outcome, granted = await self._decide(tx, session, takeover, queue)
                    if isinstance(outcome, Enqueued):
                        # Moved before the commit ends: the notes of a grant or a
                        # refusal from the queue may be heard before this task resumes.
                        session.wait()
        except StorageError:
            if isinstance(outcome, Enqueued) and session.phase is Phase.WAITING:
                session.refuse()  # rolled back: it waits for nothing
            raise
        # The device is silent while it waits for the answer: the wait is not its own.
        session.last_seen = max(session.last_seen, self.clock())
        if changed is not None:
            await self.end(session, changed)
        elif session.live and outcome is not None:
            if isinstance(outcome, Granted):
                self._welcome(session, granted or outcome.lease)
            elif isinstance(outcome, Refusal):
                session.refuse()
                await session.error(outcome.code, outcome.message)
            self.sessions.follow(session)
            self.announcer.announce_to(session)

    async def _decide(
        self, tx: Tx, session: Session, takeover: bool, queue: bool
    ) -> tuple[Granted | Refusal | Enqueued, Lease | None]:
        """Decide a login in ``tx``; the outcome, and the lease as the store granted it."""
        user, device = session.user, session.device
        assert user is not None and device is not None
        request = Request(
            session.id, session.lease_id, user.domain_id, user.id, user.name, device,
            takeover, queue,
        )  # fmt: skip
        now = await tx.now()
        decisions: Decisions
        if user.license.pool is None:
            held = await tx.leases(user.domain_id, user_id=user.id)
            decisions = seats.login_named(held, request, now)
            outcome: Granted | Refusal | Enqueued = next(
                e for e in decisions.effects if isinstance(e, Granted)
            )
        else:
            pool = await leases.used_pool(tx, user.domain_id, user.license.pool)
            session.pool = pool
            book = await leases.load_book(tx, pool)
            outcome = book.acquire(request, now)
            decisions = book
        committed = await leases.commit(tx, user.domain_id, decisions)
        return outcome, committed.granted.get(session.id)

    async def handle(self, session: Session, message: wire.ClientMessage) -> None:
        """Act on one message of a session that said ``hello``; renews its lease.

        Raises :exc:`wire.BadMessage` for a second ``hello``.
        """
        session.last_seen = started = self.clock()
        if isinstance(message, wire.Heartbeat):
            await session.reply(wire.heartbeat_ack_frame(message.seq, self.config.lease_ttl))
            METRICS.heartbeat_seconds.observe(self.clock() - started)
        elif isinstance(message, wire.Acquire):
            await self.acquire(session, message.takeover, message.queue)
        elif isinstance(message, wire.CallStart | wire.CallEnd):
            await self.call(session, message)
        elif isinstance(message, wire.Logout):
            await self.end(session, seats.LOGGED_OUT)
        else:
            raise wire.BadMessage("This session already said hello.")

    async def call(self, session: Session, message: wire.CallStart | wire.CallEnd) -> None:
        held = session.lease
        if held is None:
            await session.error("not_logged_in", "Calls need a seat or a named login first.")
            return
        async with self.store.transaction(held.domain_id) as tx:
            lease = await tx.lease(held.id)
            if lease is None:
                result: Decisions | Refusal = Refusal(
                    session.id, "not_logged_in", "This session no longer holds its lease."
                )
            else:
                now = await tx.now()
                if isinstance(message, wire.CallStart):
                    result = seats.start_call(lease, message.call_id, now)
                else:
                    result = seats.end_call(lease, message.call_id, now)
                if isinstance(result, Decisions):
                    await leases.commit(tx, lease.domain_id, result)
        if isinstance(result, Refusal):
            await session.error(result.code, result.message)
            return
        (updated,) = result.effects
        assert isinstance(updated, seats.Updated) and lease is not None
        if not session.live:
            return
        if isinstance(message, wire.CallStart):
            session.start_call(updated.lease)
            started = updated.lease.call_started_at or 0.0
            await session.reply(wire.call_started_frame(message.call_id, started))
        else:
            session.end_call(updated.lease)
            duration = updated.lease.idle_since - (lease.call_started_at or 0.0)
            await session.reply(wire.call_ended_frame(message.call_id, duration))

    async def disconnected(self, session: Session) -> None:
        """The connection closed: free what the session held."""
        await self.end(session, seats.DISCONNECTED)

    # Ending sessions.

    async def end(self, session: Session, reason: str) -> None:
        """End a session for ``reason`` and free what it holds in the store.

        At shutdown, a held lease is kept for its holder to reclaim (S10).
        """
        was = session.ending(reason)
        if was is None or was is Phase.CONNECTED:
            return
        if reason == seats.SERVER_SHUTDOWN and was in (Phase.HOLDING, Phase.IN_CALL):
            session.released()
            return
        await self.release(session, reason)

    def end_soon(self, session: Session, reason: str) -> None:
        """End a session now, and free what it held in a task of its own (for shared tasks)."""
        if session.live:
            task = asyncio.create_task(self.end(session, reason))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def release(self, session: Session, reason: str) -> bool:
        """Free what an ending session holds; ``False`` if the database is away, and it
        is retried later (meanwhile it expires by itself)."""
        assert session.user is not None
        try:
            async with self.store.transaction(session.user.domain_id) as tx:
                await leases.leave(tx, session.id, session.lease_id, reason)
        except StorageError as exc:
            logger.warning("freeing session %s later: %s", session.id, exc)
            self.unreleased[session] = reason
            return False
        self.unreleased.pop(session, None)
        session.released()
        return True

    async def end_all(self, reason: str) -> list[Session]:
        """End every session for ``reason``; return them once what they held is freed."""
        ended = list(self.sessions)
        await asyncio.gather(*(self.end(session, reason) for session in ended))
        return ended

    # Sessions told of changes by other tasks.

    def _welcome(self, session: Session, lease: Lease) -> None:
        # Pushed, not replied: a queue grant welcomes from a shared task.
        assert session.user is not None
        if session.phase is not Phase.HOLDING and session.phase is not Phase.IN_CALL:
            session.hold(lease)
        pool: Pool | None = session.pool if lease.pool is not None else None
        config = self.config
        session.push(
            wire.welcome_frame(
                session.id, session.user, lease, pool, config.heartbeat_interval, config.lease_ttl
            )
        )

    async def welcome_waiter(self, session: Session) -> None:
        """A waiting session was granted its seat from the queue."""
        async with self.store.transaction() as tx:
            lease = await tx.lease(session.lease_id)
        if lease is not None and session.phase is Phase.WAITING:
            self._welcome(session, lease)

    def revoked(self, token_id: str) -> None:
        """End the sessions opened with a token that was revoked."""
        self.revocations += 1
        for session in self.sessions:
            if session.token_id == token_id:
                self.end_soon(session, seats.TOKEN_REVOKED)

    def refuse_waiter(self, session: Session, code: str, message: str) -> None:
        """A waiting session was taken out of the queue with an error."""
        if session.phase is Phase.WAITING:
            session.refuse()
            session.push(wire.error_frame(code, message))

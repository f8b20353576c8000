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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
from ..storage.base import passed
from ..tokens import hash_token
from .admission import BUDGET, Admission
from .announcer import Announcer
from .batches import Batches, Job
from .session import Link, Phase, Session, Sessions

logger = logging.getLogger(__name__)


#: Logins decided in one transaction at most.
MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class _Login:
    """A login waiting for its domain's next batch."""

    session: Session
    takeover: bool
    queue: bool
    deadline: float | None

    @property
    def user(self) -> User:
        assert self.session.user is not None  # authenticated before it logs in
        return self.session.user


@dataclass(frozen=True, slots=True)
class _Decided:
    """A login's answer: its user's license ``changed`` (the reason to end the
    session), or its ``outcome`` and the lease as the store granted it."""

    changed: str | None = None
    outcome: Granted | Refusal | Enqueued | None = None
    lease: Lease | None = None


#: A token to check (its hash), and by when its check must begin.
_Token = tuple[str, float | None]
#: A checked token's user (if it is a live user token) and its id.
_Checked = tuple[User | None, str | None]


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
        # Logins decided with the others of their domain waiting then, tokens
        # checked with the others of the node.
        self._logins: Batches[_Login, _Decided] = Batches(
            self._decide_logins, MAX_BATCH, distinct=lambda login: login.user.id
        )
        self._tokens: Batches[_Token, _Checked] = Batches(self._check_tokens, MAX_BATCH)

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
                found = await self._tokens.submit("", (hash_token(message.token), deadline))
                # A revocation heard meanwhile may be of this token, and found no
                # session of it to end: check again. From here to authenticating,
                # nothing awaits.
                if self.revocations == heard:
                    break
            user, token_id = found
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

    async def _check_tokens(self, _: str, jobs: list[Job[_Token, _Checked]]) -> None:
        """Check a batch of device tokens in one transaction: each one's user, if
        it is a live user token, and the token's id."""
        checked = []
        for job in jobs:
            if passed(job.item[1]):
                job.give(Overloaded())
            else:
                checked.append(job)
        if not checked:
            return
        async with self.store.transaction(deadline=_latest(job.item[1] for job in checked)) as tx:
            grants = await tx.use_tokens([job.item[0] for job in checked])
            wanted: dict[str, set[str]] = {}
            for grant in grants.values():
                if grant.role == "user" and grant.domain_id and grant.user_id:
                    wanted.setdefault(grant.domain_id, set()).add(grant.user_id)
            users: dict[tuple[str | None, str | None], User] = {
                (user.domain_id, user.id): user
                for domain_id, ids in wanted.items()
                for user in await tx.users(domain_id, ids)
            }
        for job in checked:
            found = grants.get(job.item[0])
            if found is None:
                job.give((None, None))
            else:
                user = users.get((found.domain_id, found.user_id)) if found.role == "user" else None
                job.give((user, found.token_id))

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
        """Decide a login, begun by ``deadline``: a welcome, a queue place or an error.

        It is decided with the other logins of its domain waiting then
        (:meth:`_decide_logins`).
        """
        user = session.user
        assert user is not None
        decided = await self._logins.submit(
            user.domain_id, _Login(session, takeover, queue, deadline)
        )
        # The device is silent while it waits for the answer: the wait is not its own.
        session.last_seen = max(session.last_seen, self.clock())
        if decided.changed is not None:
            await self.end(session, decided.changed)
        elif session.live and decided.outcome is not None:
            if isinstance(decided.outcome, Granted):
                self._welcome(session, decided.lease or decided.outcome.lease)
            elif isinstance(decided.outcome, Refusal):
                session.refuse()
                await session.error(decided.outcome.code, decided.outcome.message)
            self.sessions.follow(session)
            self.announcer.announce_to(session)

    async def _decide_logins(self, domain_id: str, jobs: list[Job[_Login, _Decided]]) -> None:
        """Decide a batch of a domain's logins in one transaction: the domain's
        lock, taken once on every node, and one commit for them all."""
        decided: dict[Job[_Login, _Decided], _Decided | Exception] = {}
        deadline = _latest(job.item.deadline for job in jobs)
        try:
            async with self.store.transaction(domain_id, deadline=deadline) as tx:
                await self._decide(tx, domain_id, jobs, decided)
        except BaseException:
            for job, answer in decided.items():
                if isinstance(answer, _Decided) and isinstance(answer.outcome, Enqueued):
                    if job.item.session.phase is Phase.WAITING:
                        job.item.session.refuse()  # rolled back: it waits for nothing
            raise
        for job in jobs:
            job.give(decided.get(job, _Decided()))

    async def _decide(
        self,
        tx: Tx,
        domain_id: str,
        jobs: list[Job[_Login, _Decided]],
        decided: dict[Job[_Login, _Decided], _Decided | Exception],
    ) -> None:
        """Decide a batch of logins in ``tx``: each one's answer goes in ``decided``
        (none for work of a connection already gone, which is dropped)."""
        live = []
        for job in jobs:
            login = job.item
            if not login.session.live or login.session.link.gone:
                continue
            if passed(login.deadline):
                decided[job] = Overloaded()
                continue
            live.append(job)
        if not live:
            return
        users = [job.item.user for job in live]
        now_users = {u.id: u for u in await tx.users(domain_id, [u.id for u in users])}
        named = [u.id for u in users if u.license.pool is None]
        pools = {u.license.pool for u in users if u.license.pool is not None}
        book = await leases.load_domain_book(tx, domain_id, pools, named)
        now = await tx.now()
        for job, user in zip(live, users, strict=True):
            login = job.item
            session, device = login.session, login.session.device
            assert device is not None
            now_user = now_users.get(user.id)
            if now_user is None:
                decided[job] = _Decided(changed=seats.USER_DELETED)
                continue
            if now_user.license != user.license:
                decided[job] = _Decided(changed=seats.LICENSE_CHANGED)
                continue
            request = Request(
                session.id, session.lease_id, domain_id, user.id, user.name, device,
                login.takeover, login.queue,
            )  # fmt: skip
            if user.license.pool is not None:
                session.pool = book.books[user.license.pool].pool
            outcome = book.login(request, user.license.pool, now)
            decided[job] = _Decided(outcome=outcome)
            if isinstance(outcome, Enqueued):
                # Moved before the commit ends: the notes of a grant or a
                # refusal from the queue may be heard before this task resumes.
                session.wait()
        committed = await leases.commit(tx, domain_id, book)
        for job, answer in decided.items():
            if isinstance(answer, _Decided) and isinstance(answer.outcome, Granted):
                lease = committed.granted.get(job.item.session.id)
                decided[job] = _Decided(outcome=answer.outcome, lease=lease)

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


def _latest(deadlines: Iterable[float | None]) -> float | None:
    """The latest of some deadlines; ``None`` (no deadline) if one is."""
    found = list(deadlines)
    return None if None in found else max(d for d in found if d is not None)

"""What administrators do: domains, pools, users, licenses, tokens, releases,
identity providers, webhooks.

Each operation runs in one transaction of its domain, checks the licensing
rules (:mod:`presence.core.rules`) on the state as it would be afterwards, and
writes only if they hold, so a refused request changes nothing. Sessions that a
change ends are ended through the store's notes, on whichever node holds them.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import uuid
from dataclasses import dataclass, replace
from typing import Any

from . import leases, notes, outbound
from .core import rules, seats
from .core.model import Domain, Event, Identity, Lease, License, Pool, User
from .core.usage import PoolSeries, PoolUsage, point_count, series, usage
from .core.webhooks import Progress, Webhook
from .errors import BadRequest, Forbidden, NotFound, RuleViolation, Unauthorized
from .identity import issuer_policy
from .storage import Delivery, EventQuery, Store, StoredEvent, Token, TokenGrant, Tx
from .storage.base import read_history
from .tokens import hash_token, new_token, new_webhook_secret

SERVER = TokenGrant("server")

#: Seconds a series covers when its start is not given: a day.
SERIES_DEFAULT_PERIOD = 86_400
#: The most points :meth:`Admin.usage_series` gives per pool.
SERIES_MAX_POINTS = 2000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A domain's live presence: its pools with their seats, and named devices."""

    domain: Domain
    books: list[seats.PoolBook]
    named: list[Lease]
    events: list[StoredEvent]
    names: dict[str, str]  # user id to name, for the events


class Admin:
    """The admin operations over one store, for callers holding a token."""

    def __init__(
        self,
        store: Store,
        admin_token: str | None,
        webhook_allow_private: bool = False,
        oidc_allow_http: bool = False,
    ) -> None:
        self.store = store
        self._admin_token = admin_token
        self._webhook_allow_private = webhook_allow_private
        self._issuers = issuer_policy(oidc_allow_http)

    async def ensure_server_token(self) -> str | None:
        """Bring the stored server admin tokens in line with the configuration;
        return a token generated now, to print once.

        With a configured token, tokens generated at earlier starts are revoked.
        Without one, a token is generated if none is stored (at first start,
        and at the first start after a configured token was dropped).
        """
        # Nodes starting together take turns here.
        async with self.store.transaction(_SERVER_TOKENS) as tx:
            stored = await tx.tokens(None)
            if self._admin_token is not None:
                for token in stored:
                    await tx.delete_token(None, token.id)
                return None
            if stored:
                return None
            secret = new_token()
            token = Token(uuid.uuid4().hex, "server", None, None, None, await tx.now())
            await tx.insert_token(hash_token(secret), token)
            return secret

    async def authenticate(self, token: str | None) -> TokenGrant:
        """What a bearer token allows; :exc:`Unauthorized` for a token that is
        unknown, expired or revoked."""
        if token:
            if self._admin_token is not None and hmac.compare_digest(
                token.encode(), self._admin_token.encode()
            ):
                return SERVER
            async with self.store.transaction() as tx:
                grant = await tx.use_token(hash_token(token))
            # A generated server token stays valid only while none is configured
            # (another node may not have revoked it yet).
            if grant is not None and (grant.role != "server" or self._admin_token is None):
                return grant
        raise Unauthorized("A valid bearer token is required.")

    # Domains and tokens.

    async def create_domain(self, who: TokenGrant, domain: Domain) -> Domain:
        _server_only(who)
        rules.check_domain(domain, [], 0)
        async with self.store.transaction(domain.id) as tx:
            if await tx.domain(domain.id) is not None:
                raise RuleViolation("already_exists", f"Domain {domain.id!r} exists already.")
            await tx.insert_domain(domain)
        return domain

    async def domains(self, who: TokenGrant) -> list[Domain]:
        """Every domain, by id (server admin only)."""
        _server_only(who)
        async with self.store.transaction() as tx:
            return await tx.domains()

    async def domain(self, who: TokenGrant, domain_id: str) -> Domain:
        async with self.store.transaction(domain_id) as tx:
            return await _domain(tx, who, domain_id, "admin")

    async def update_domain(
        self, who: TokenGrant, domain_id: str, changes: dict[str, Any]
    ) -> Domain:
        async with self.store.transaction(domain_id) as tx:
            domain = await _domain(tx, who, domain_id, "server")
            changed = replace(domain, **changes)
            rules.check_domain(changed, await tx.pools(domain_id), await tx.named_users(domain_id))
            await tx.update_domain(changed)
            return changed

    async def create_token(
        self,
        who: TokenGrant,
        domain_id: str,
        role: str,
        user_id: str | None = None,
        *,
        label: str | None = None,
        expires_in: int | None = None,
    ) -> tuple[Token, str]:
        """A new token of the domain (of one of its users, for ``user_id``),
        valid for ``expires_in`` seconds or until revoked; returns it with the
        secret, which is shown this once."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            if user_id is not None and await tx.user(domain_id, user_id) is None:
                raise NotFound(f"There is no user {user_id!r}.")
            now = await tx.now()
            expires_at = None if expires_in is None else now + expires_in
            token = Token(uuid.uuid4().hex, role, domain_id, user_id, label, now, expires_at)
            secret = new_token()
            await tx.insert_token(hash_token(secret), token)
            return token, secret

    async def tokens(self, who: TokenGrant, domain_id: str) -> list[Token]:
        """The domain's tokens, user tokens and expired ones included, oldest first."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            return await tx.tokens(domain_id)

    async def revoke_token(self, who: TokenGrant, domain_id: str, token_id: str) -> None:
        """Revoke a token: every node ends the sessions and wallboards opened with it."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            token = await tx.delete_token(domain_id, token_id)
            if token is None:
                raise NotFound(f"There is no token {token_id!r}.")
            await _revoked(tx, token, await tx.now())

    # Pools.

    async def pools(self, who: TokenGrant, domain_id: str) -> list[tuple[Pool, int]]:
        """The pools with how many seats each has occupied."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            held = await tx.leases(domain_id)
            return [
                (pool, sum(lease.pool == pool.id for lease in held))
                for pool in await tx.pools(domain_id)
            ]

    async def create_pool(self, who: TokenGrant, pool: Pool) -> tuple[Pool, int]:
        async with self.store.transaction(pool.domain_id) as tx:
            domain = await _domain(tx, who, pool.domain_id, "admin")
            pools = await tx.pools(domain.id)
            if any(p.id == pool.id for p in pools):
                raise RuleViolation("already_exists", f"Pool {pool.id!r} exists already.")
            rules.check_domain(domain, [*pools, pool], await tx.named_users(domain.id))
            await tx.insert_pool(pool)
            tx.notify(notes.PoolChanged(pool.domain_id, pool.id))
            return pool, 0

    async def update_pool(
        self, who: TokenGrant, domain_id: str, pool_id: str, changes: dict[str, Any]
    ) -> tuple[Pool, int]:
        async with self.store.transaction(domain_id) as tx:
            domain = await _domain(tx, who, domain_id, "admin")
            pools = await tx.pools(domain_id)
            pool = _find_pool(pools, pool_id)
            changed = replace(pool, **changes)
            rules.check_domain(
                domain, [changed if p.id == pool_id else p for p in pools],
                await tx.named_users(domain_id),
            )  # fmt: skip
            await tx.update_pool(changed)
            book = await leases.load_book(tx, changed)
            book.fill(await tx.now())  # a grown pool serves its queue at once
            await leases.commit(tx, domain_id, book)
            tx.notify(notes.PoolChanged(domain_id, pool_id))
            return changed, len(book.leases)

    async def delete_pool(self, who: TokenGrant, domain_id: str, pool_id: str) -> None:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            _find_pool(await tx.pools(domain_id), pool_id)
            members = [u for u in await tx.users(domain_id) if u.license.pool == pool_id]
            if members:
                raise RuleViolation(
                    "pool_not_empty",
                    f"Pool {pool_id!r} still has {len(members)} users; move them first.",
                )
            identity = await tx.identity(domain_id)
            if identity is not None and identity.provision is not None:
                if identity.provision.pool == pool_id:
                    raise RuleViolation(
                        "pool_not_empty",
                        f"Users signing in with the identity provider are put in pool "
                        f"{pool_id!r}; change the identity's provision first.",
                    )
            await tx.delete_pool(domain_id, pool_id)
            tx.notify(notes.PoolChanged(domain_id, pool_id))

    # Users and their licenses.

    async def users(self, who: TokenGrant, domain_id: str) -> list[User]:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            return await tx.users(domain_id)

    async def create_user(
        self, who: TokenGrant, domain_id: str, email: str, name: str, license: License
    ) -> User:
        async with self.store.transaction(domain_id) as tx:
            domain = await _domain(tx, who, domain_id, "admin")
            if await tx.email_taken(domain_id, email):
                raise RuleViolation("email_taken", f"{email} already has a user.")
            user = User(domain_id, uuid.uuid4().hex, email, name, license)
            await leases.check_license(tx, domain, None, user)
            await tx.insert_user(user)
            return user

    async def set_license(
        self, who: TokenGrant, domain_id: str, user_id: str, license: License
    ) -> User:
        async with self.store.transaction(domain_id) as tx:
            domain = await _domain(tx, who, domain_id, "admin")
            user = await _user(tx, domain_id, user_id)
            if user.license == license:
                return user
            changed = replace(user, license=license)
            await leases.check_license(tx, domain, user, changed)
            now = await tx.now()
            # Every change is logged once: ending a seat logs it with the seat;
            # otherwise (named devices, or no live session) it is logged here.
            ended = await leases.end_user(tx, user, seats.LICENSE_CHANGED, now)
            if not any(lease.pool is not None for lease in ended):
                event = Event("license_changed", now, domain_id, user_id, "")
                await leases.commit(tx, domain_id, seats.Decisions(events=[event]))
            await tx.update_user(changed)
            return changed

    async def delete_user(self, who: TokenGrant, domain_id: str, user_id: str) -> None:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            user = await _user(tx, domain_id, user_id)
            now = await tx.now()
            await leases.end_user(tx, user, seats.USER_DELETED, now)
            for token in await tx.tokens(domain_id):
                if token.user_id == user_id:
                    await tx.delete_token(domain_id, token.id)
                    await _revoked(tx, token, now)
            await tx.delete_user(domain_id, user_id)

    # Presence.

    async def presence(self, who: TokenGrant, domain_id: str, events: int = 0) -> Snapshot:
        """The domain's presence now, with its ``events`` latest events."""
        async with self.store.transaction(domain_id) as tx:
            domain = await _domain(tx, who, domain_id, "wallboard")
            books = [await leases.load_book(tx, pool) for pool in await tx.pools(domain_id)]
            named = [x for x in await tx.leases(domain_id) if x.pool is None]
            latest = await tx.latest_events(domain_id, events) if events else []
            names = {u.id: u.name for u in await tx.users(domain_id)} if events else {}
            return Snapshot(domain, books, named, latest, names)

    async def release(self, who: TokenGrant, domain_id: str, lease_id: str) -> None:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            lease = await tx.lease(lease_id)
            if lease is None or lease.domain_id != domain_id:
                raise NotFound(f"There is no lease {lease_id!r}.")
            await leases.release(tx, lease, seats.RELEASED_BY_ADMIN, await tx.now())

    async def events(self, who: TokenGrant, domain_id: str, query: EventQuery) -> list[StoredEvent]:
        """The domain's events that ``query`` asks for, oldest first."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            return await tx.events(domain_id, query)

    async def usage(
        self, who: TokenGrant, domain_id: str, start: float, end: float | None
    ) -> list[PoolUsage]:
        """Each pool's usage in ``[start, end)`` (``end``: default and at most now)."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            now = await tx.now()
            end = now if end is None else min(end, now)
            pools = await tx.pools(domain_id)
            period = await tx.usage_period(domain_id, start, end)
        history = await read_history(period, self.store.transaction)
        # A second of work for a year of history: in a thread, so the node keeps serving.
        return await asyncio.to_thread(usage, pools, history, start, end)

    async def usage_series(
        self, who: TokenGrant, domain_id: str, start: float | None, end: float | None, step: float
    ) -> list[PoolSeries]:
        """Each pool's usage per ``step`` seconds from ``start`` (default: a day
        before ``end``) to ``end`` (default and at most: now), as
        :func:`presence.core.usage.series` gives it; no points if ``end <= start``.

        More than :data:`SERIES_MAX_POINTS` points is :exc:`BadRequest`.
        """
        if not (math.isfinite(step) and step > 0):
            raise BadRequest("step", "The step must be a positive number of seconds.")
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            now = await tx.now()
            end = now if end is None else min(end, now)
            start = end - SERIES_DEFAULT_PERIOD if start is None else start
            points = point_count(start, end, step)
            if points > SERIES_MAX_POINTS:
                raise BadRequest(
                    "step",
                    f"A step of {step:g} seconds makes {points:,} points over this period, "
                    f"and at most {SERIES_MAX_POINTS:,} are given: choose a longer step "
                    "or a shorter period.",
                )
            pools = await tx.pools(domain_id)
            if not points:
                return [PoolSeries(pool.id, pool.seats, []) for pool in pools]
            period = await tx.usage_period(domain_id, start, end)
        history = await read_history(period, self.store.transaction)
        return await asyncio.to_thread(series, pools, history, start, end, step)

    # The identity provider.

    async def identity(self, who: TokenGrant, domain_id: str) -> Identity:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            identity = await tx.identity(domain_id)
        if identity is None:
            raise NotFound(f"Domain {domain_id!r} has no identity provider.")
        return identity

    async def set_identity(self, who: TokenGrant, identity: Identity) -> Identity:
        """Set the domain's identity provider. Its issuer is checked, not fetched
        (nor resolved: its addresses are checked at each fetch)."""
        async with self.store.transaction(identity.domain_id) as tx:
            domain = await _domain(tx, who, identity.domain_id, "admin")
            try:
                outbound.target(identity.issuer, self._issuers)
            except outbound.Unreachable as exc:
                raise BadRequest("issuer", str(exc)) from None
            if identity.provision is not None:
                pools = await tx.pools(domain.id)
                rules.check_license(domain, identity.provision, pools, field="provision")
            await tx.set_identity(identity)
            return identity

    async def delete_identity(self, who: TokenGrant, domain_id: str) -> None:
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            if not await tx.delete_identity(domain_id):
                raise NotFound(f"Domain {domain_id!r} has no identity provider.")

    # Webhook endpoints.

    async def webhooks(self, who: TokenGrant, domain_id: str) -> list[Webhook]:
        """The domain's endpoints, oldest first."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            return [webhook for webhook, _ in await tx.webhooks(domain_id)]

    async def create_webhook(
        self,
        who: TokenGrant,
        domain_id: str,
        url: str,
        events: frozenset[str] | None,
        description: str | None,
    ) -> Webhook:
        """A new endpoint, which receives the events logged from now on."""
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
        await self._check_url(url)
        async with self.store.transaction(domain_id) as tx:
            await _domain(tx, who, domain_id, "admin")
            latest = await tx.latest_events(domain_id, 1)
            webhook = Webhook(
                domain_id, uuid.uuid4().hex, url, events, description, True,
                new_webhook_secret(), await tx.now(),
            )  # fmt: skip
            await tx.insert_webhook(webhook, Progress(latest[0].id if latest else 0))
            tx.notify(notes.WebhooksChanged(domain_id))
            return webhook

    async def update_webhook(
        self, who: TokenGrant, domain_id: str, webhook_id: str, changes: dict[str, Any]
    ) -> Webhook:
        """Change an endpoint. A new URL, or enabling it again, starts a fresh
        retry schedule: the event it stopped at is tried at once."""
        async with self.store.transaction(domain_id) as tx:
            await _webhook(tx, who, domain_id, webhook_id)
        if "url" in changes:
            await self._check_url(changes["url"])
        async with self.store.transaction(domain_id) as tx:
            webhook, progress = await _webhook(tx, who, domain_id, webhook_id)
            changed = replace(webhook, **changes)
            if changed.url != webhook.url or (changed.enabled and not webhook.enabled):
                progress = Progress(progress.cursor)
            await tx.update_webhook(changed, progress)
            tx.notify(notes.WebhooksChanged(domain_id))
            return changed

    async def delete_webhook(self, who: TokenGrant, domain_id: str, webhook_id: str) -> None:
        async with self.store.transaction(domain_id) as tx:
            await _webhook(tx, who, domain_id, webhook_id)
            await tx.delete_webhook(domain_id, webhook_id)
            tx.notify(notes.WebhooksChanged(domain_id))

    async def deliveries(
        self, who: TokenGrant, domain_id: str, webhook_id: str, limit: int
    ) -> list[Delivery]:
        """An endpoint's latest ``limit`` delivery attempts, newest first."""
        async with self.store.transaction(domain_id) as tx:
            await _webhook(tx, who, domain_id, webhook_id)
            return await tx.deliveries(webhook_id, limit)

    async def _check_url(self, url: str) -> None:
        """:exc:`BadRequest` for a URL no webhook may have (it resolves the host:
        outside any transaction)."""
        try:
            await outbound.check(url, outbound.webhook_policy(self._webhook_allow_private))
        except outbound.Unreachable as exc:
            raise BadRequest("url", str(exc)) from None


# The lock that starting nodes take turns at for the server tokens: no
# domain's, as no domain id has a space.
_SERVER_TOKENS = "server tokens"


async def _revoked(tx: Tx, token: Token, now: float) -> None:
    """Log a token's revocation, and have every node end what was opened with it."""
    assert token.domain_id is not None
    event = Event("token_revoked", now, token.domain_id, token.user_id or "", "")
    await leases.commit(tx, token.domain_id, seats.Decisions(events=[event]))
    tx.notify(notes.TokenRevoked(token.domain_id, token.id))


def _server_only(who: TokenGrant) -> None:
    if who.role != "server":
        raise Forbidden("Only the server administrator may do this.")


async def _domain(tx: Tx, who: TokenGrant, domain_id: str, needs: str) -> Domain:
    """The domain, if ``who`` may see it and has the role ``needs`` in it.

    ``needs`` is ``server``, ``admin`` or ``wallboard`` (reading presence).
    Another domain's token is told the domain does not exist.
    """
    domain = await tx.domain(domain_id)
    if who.role != "server" and who.domain_id != domain_id:
        domain = None
    if domain is None:
        raise NotFound(f"There is no domain {domain_id!r}.")
    if needs == "server":
        _server_only(who)
    elif who.role not in ("server", "admin") and not (
        needs == "wallboard" and who.role == "wallboard"
    ):
        raise Forbidden(f"A {who.role} token may not do this.")
    return domain


async def _webhook(
    tx: Tx, who: TokenGrant, domain_id: str, webhook_id: str
) -> tuple[Webhook, Progress]:
    await _domain(tx, who, domain_id, "admin")
    found = await tx.webhook(domain_id, webhook_id)
    if found is None:
        raise NotFound(f"There is no webhook {webhook_id!r}.")
    return found


async def _user(tx: Tx, domain_id: str, user_id: str) -> User:
    user = await tx.user(domain_id, user_id)
    if user is None:
        raise NotFound(f"There is no user {user_id!r}.")
    return user


def _find_pool(pools: list[Pool], pool_id: str) -> Pool:
    for pool in pools:
        if pool.id == pool_id:
            return pool
    raise NotFound(f"There is no pool {pool_id!r}.")

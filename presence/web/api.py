"""The admin HTTP API under ``/api/v1``: parse, call :class:`~presence.admin.Admin`, answer JSON.

Every endpoint is an :class:`Operation`: its method and path, the types of
its request body, query and answer, and a handler that only translates
between them and :class:`~presence.admin.Admin`. The routes and the OpenAPI
document (``GET /api/v1/openapi.json``, :mod:`.openapi`) are both made from
:data:`OPERATIONS`, so every endpoint is described as it is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import views
from ..admin import Admin
from ..core.model import Domain, Identity, Pool
from ..storage import EventQuery, TokenGrant
from ..views import (
    CreatedTokenView,
    CreatedWebhookView,
    DeliveryView,
    DomainView,
    EventView,
    IdentityView,
    PoolView,
    PresenceView,
    SeriesView,
    TokenView,
    UsageView,
    UserView,
    WebhookView,
)
from . import openapi
from .guard import authenticated
from .models import (
    DeliveriesQuery,
    DomainChanges,
    EventsQuery,
    IdentityBody,
    LicenseBody,
    NewDomain,
    NewDomainToken,
    NewPool,
    NewUser,
    NewUserToken,
    NewWebhook,
    Period,
    PoolChanges,
    Query,
    SeriesQuery,
    WebhookChanges,
    license_of,
    parse_body,
    parse_id,
    parse_query,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request, its path ids, body and query parsed."""

    admin: Admin
    who: TokenGrant
    path: dict[str, str]
    body: Any
    query: Any

    @property
    def domain(self) -> str:
        return self.path["domain"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One endpoint of the admin API, as served and as described."""

    method: str
    path: str
    handler: Callable[[Call], Awaitable[Any]]
    summary: str
    #: The type of the answer's body; ``None`` answers 204 without one.
    response: Any = None
    #: The status of a success with a body.
    status: int = 200
    #: The type of the request body; ``None`` takes none.
    body: Any = None
    query: type[Query] | None = None
    #: HTTP statuses of refusals beyond those every operation may give.
    refusals: tuple[int, ...] = ()
    #: The answer as CSV, for ``Accept: text/csv``.
    csv: Callable[[Any], str] | None = None

    def endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            admin: Admin = request.app.state.admin
            who = await authenticated_request(request, lambda: admin.authenticate(bearer(request)))
            path = {name: parse_id(name, value) for name, value in request.path_params.items()}
            body = None if self.body is None else parse_body(self.body, await request.body())
            query = None if self.query is None else parse_query(self.query, request.query_params)
            answer = await self.handler(Call(admin, who, path, body, query))
            if self.response is None:
                return Response(status_code=204)
            if self.csv is not None and "text/csv" in request.headers.get("accept", ""):
                return Response(self.csv(answer), media_type="text/csv")
            return JSONResponse(answer, self.status)

        return endpoint


async def authenticated_request(request: Request, authenticate: Callable[[], Awaitable[T]]) -> T:
    client = request.client
    address = client.host if client else "unknown"
    return await authenticated(request.app.state.gate, address, authenticate)


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# Domains.


async def list_domains(c: Call) -> list[DomainView]:
    return [views.domain_view(domain) for domain in await c.admin.domains(c.who)]


async def create_domain(c: Call) -> DomainView:
    b: NewDomain = c.body
    domain = Domain(b.id, b.name, b.plan, b.named_licenses, b.seat_licenses)
    return views.domain_view(await c.admin.create_domain(c.who, domain))


async def get_domain(c: Call) -> DomainView:
    return views.domain_view(await c.admin.domain(c.who, c.domain))


async def patch_domain(c: Call) -> DomainView:
    changes: DomainChanges = c.body
    return views.domain_view(await c.admin.update_domain(c.who, c.domain, dict(changes)))


# Tokens.


async def create_domain_token(c: Call) -> CreatedTokenView:
    b: NewDomainToken = c.body
    token, secret = await c.admin.create_token(
        c.who, c.domain, b.role, label=b.label, expires_in=b.expires_in
    )
    return views.created_token_view(token, secret)


async def list_tokens(c: Call) -> list[TokenView]:
    return [views.token_view(token) for token in await c.admin.tokens(c.who, c.domain)]


async def revoke_token(c: Call) -> None:
    await c.admin.revoke_token(c.who, c.domain, c.path["token"])


async def create_user_token(c: Call) -> CreatedTokenView:
    b: NewUserToken = c.body
    token, secret = await c.admin.create_token(
        c.who, c.domain, "user", c.path["user"], label=b.label, expires_in=b.expires_in
    )
    return views.created_token_view(token, secret)


# Pools.


async def list_pools(c: Call) -> list[PoolView]:
    return [
        views.pool_view(pool, occupied) for pool, occupied in await c.admin.pools(c.who, c.domain)
    ]


async def create_pool(c: Call) -> PoolView:
    b: NewPool = c.body
    pool = Pool(
        c.domain, b.id, b.name, b.seats, b.idle_logoff_s, b.alert_interval_s,
        b.alert_threshold_pct,
    )  # fmt: skip
    return views.pool_view(*await c.admin.create_pool(c.who, pool))


async def patch_pool(c: Call) -> PoolView:
    changes: PoolChanges = c.body
    pool = await c.admin.update_pool(c.who, c.domain, c.path["pool"], dict(changes))
    return views.pool_view(*pool)


async def delete_pool(c: Call) -> None:
    await c.admin.delete_pool(c.who, c.domain, c.path["pool"])


# Users.


async def list_users(c: Call) -> list[UserView]:
    return [views.user_view(user) for user in await c.admin.users(c.who, c.domain)]


async def create_user(c: Call) -> UserView:
    b: NewUser = c.body
    user = await c.admin.create_user(c.who, c.domain, b.email, b.name, license_of(b.license))
    return views.user_view(user)


async def put_license(c: Call) -> UserView:
    user = await c.admin.set_license(c.who, c.domain, c.path["user"], license_of(c.body))
    return views.user_view(user)


async def delete_user(c: Call) -> None:
    await c.admin.delete_user(c.who, c.domain, c.path["user"])


# The identity provider.


async def get_identity(c: Call) -> IdentityView:
    return views.identity_view(await c.admin.identity(c.who, c.domain))


async def put_identity(c: Call) -> IdentityView:
    b: IdentityBody = c.body
    provision = None if b.provision is None else license_of(b.provision)
    identity = Identity(c.domain, b.issuer, b.audience, b.email_claim, provision)
    return views.identity_view(await c.admin.set_identity(c.who, identity))


async def delete_identity(c: Call) -> None:
    await c.admin.delete_identity(c.who, c.domain)


# Webhooks.


async def list_webhooks(c: Call) -> list[WebhookView]:
    return [views.webhook_view(w) for w in await c.admin.webhooks(c.who, c.domain)]


async def create_webhook(c: Call) -> CreatedWebhookView:
    b: NewWebhook = c.body
    events = None if b.events is None else frozenset(b.events)
    webhook = await c.admin.create_webhook(c.who, c.domain, b.url, events, b.description)
    return views.created_webhook_view(webhook)


async def patch_webhook(c: Call) -> WebhookView:
    changes: dict[str, Any] = dict(c.body)
    if "events" in changes:
        changes["events"] = None if changes["events"] is None else frozenset(changes["events"])
    webhook = await c.admin.update_webhook(c.who, c.domain, c.path["webhook"], changes)
    return views.webhook_view(webhook)


async def delete_webhook(c: Call) -> None:
    await c.admin.delete_webhook(c.who, c.domain, c.path["webhook"])


async def deliveries(c: Call) -> list[DeliveryView]:
    q: DeliveriesQuery = c.query
    found = await c.admin.deliveries(c.who, c.domain, c.path["webhook"], q.limit)
    return [views.delivery_view(d) for d in found]


# Presence, events and usage.


async def presence(c: Call) -> PresenceView:
    snapshot = await c.admin.presence(c.who, c.domain)
    return views.presence_view(snapshot.domain.id, snapshot.books, snapshot.named)


async def release_lease(c: Call) -> None:
    await c.admin.release(c.who, c.domain, c.path["lease_id"])


async def events(c: Call) -> list[EventView]:
    q: EventsQuery = c.query
    query = EventQuery(
        after=q.after, before=q.before, limit=q.limit, types=frozenset(q.type),
        user_id=q.user_id, pool=q.pool, start=q.start, end=q.end,
    )  # fmt: skip
    return [views.event_view(e) for e in await c.admin.events(c.who, c.domain, query)]


async def usage(c: Call) -> list[UsageView]:
    q: Period = c.query
    report = await c.admin.usage(c.who, c.domain, q.start or 0.0, q.end)
    return [views.usage_view(pool) for pool in report]


async def usage_series(c: Call) -> list[SeriesView]:
    q: SeriesQuery = c.query
    series = await c.admin.usage_series(c.who, c.domain, q.start, q.end, q.step)
    return [views.series_view(pool) for pool in series]


PREFIX = "/api/v1"
D = "/api/v1/domains/{domain}"
CHANGE = (409,)  # a licensing rule refused the change
OPERATIONS = [
    Operation("GET", "/api/v1/domains", list_domains, "All domains (server admin).",
              list[DomainView]),
    Operation("POST", "/api/v1/domains", create_domain, "Create a domain (server admin).",
              DomainView, 201, NewDomain, refusals=CHANGE),
    Operation("GET", D, get_domain, "A domain.", DomainView),
    Operation("PATCH", D, patch_domain, "Change a domain's name, plan or licenses "
              "(server admin).", DomainView, body=DomainChanges, refusals=CHANGE),
    Operation("POST", D + "/tokens", create_domain_token, "Create an admin or wallboard token.",
              CreatedTokenView, 201, NewDomainToken),
    Operation("GET", D + "/tokens", list_tokens, "The domain's tokens, never their secrets.",
              list[TokenView]),
    Operation("DELETE", D + "/tokens/{token}", revoke_token, "Revoke a token: the sessions "
              "and wallboards opened with it end."),
    Operation("GET", D + "/pools", list_pools, "The seat pools.", list[PoolView]),
    Operation("POST", D + "/pools", create_pool, "Create a seat pool (Enterprise plan).",
              PoolView, 201, NewPool, refusals=CHANGE),
    Operation("PATCH", D + "/pools/{pool}", patch_pool, "Rename, resize or change the idle "
              "log-off or alerts of a pool.", PoolView, body=PoolChanges, refusals=CHANGE),
    Operation("DELETE", D + "/pools/{pool}", delete_pool, "Delete a pool without users.",
              refusals=CHANGE),
    Operation("GET", D + "/users", list_users, "The users.", list[UserView]),
    Operation("POST", D + "/users", create_user, "Create a user with a license.", UserView, 201,
              NewUser, refusals=CHANGE),
    Operation("PUT", D + "/users/{user}/license", put_license, "Change a user's license; "
              "their live sessions end with license_changed.", UserView, body=LicenseBody,
              refusals=CHANGE),
    Operation("DELETE", D + "/users/{user}", delete_user, "Delete a user, ending their "
              "sessions and revoking their tokens."),
    Operation("POST", D + "/users/{user}/tokens", create_user_token, "Create a token with "
              "which devices log in as the user.", CreatedTokenView, 201, NewUserToken),
    Operation("GET", D + "/identity", get_identity, "The domain's identity provider "
              "(OpenID Connect).", IdentityView),
    Operation("PUT", D + "/identity", put_identity, "Let devices sign in with the domain's "
              "identity provider.", IdentityView, body=IdentityBody, refusals=CHANGE),
    Operation("DELETE", D + "/identity", delete_identity, "Stop sign-ins with the identity "
              "provider."),
    Operation("GET", D + "/webhooks", list_webhooks, "The webhook endpoints, never their "
              "secrets.", list[WebhookView]),
    Operation("POST", D + "/webhooks", create_webhook, "Register an endpoint for the events "
              "logged from now on; its signing secret is shown this once.", CreatedWebhookView,
              201, NewWebhook),
    Operation("PATCH", D + "/webhooks/{webhook}", patch_webhook, "Change an endpoint; "
              "enabling it again resumes delivery where it stopped.", WebhookView,
              body=WebhookChanges),
    Operation("DELETE", D + "/webhooks/{webhook}", delete_webhook, "Delete an endpoint."),
    Operation("GET", D + "/webhooks/{webhook}/deliveries", deliveries, "An endpoint's latest "
              "delivery attempts, newest first.", list[DeliveryView], query=DeliveriesQuery),
    Operation("GET", D + "/presence", presence, "Who holds which seat, and named users' "
              "devices, now.", PresenceView),
    Operation("DELETE", D + "/leases/{lease_id}", release_lease, "Release a seat or device: "
              "its session ends with released_by_admin."),
    Operation("GET", D + "/events", events, "The event log, oldest first, filtered and paged.",
              list[EventView], query=EventsQuery),
    Operation("GET", D + "/usage", usage, "Each pool's usage over a period.",
              list[UsageView], query=Period, csv=views.usage_csv),
    Operation("GET", D + "/usage/series", usage_series, "Each pool's usage per step of a "
              "period.", list[SeriesView], query=SeriesQuery, csv=views.series_csv),
]  # fmt: skip

DOCUMENT = openapi.document(OPERATIONS)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


def _routes() -> list[Route]:
    """One route per path (below ``/api/v1``), so that a method it lacks is
    answered 405 with every method it has in ``Allow``."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, {})[op.method] = op.endpoint()

    def route(path: str, endpoints: dict[str, Callable[[Request], Awaitable[Response]]]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await endpoints["GET" if request.method == "HEAD" else request.method](request)

        return Route(path.removeprefix(PREFIX), endpoint, methods=list(endpoints))

    return [route(path, endpoints) for path, endpoints in by_path.items()]


#: The API's routes, to mount at :data:`PREFIX`: every path below it is the
#: API's, answered by it (404 and 405 included) and never by the static files.
routes = [*_routes(), Route("/openapi.json", openapi_json, methods=["GET"])]

"""The admin HTTP API under ``/api/v1``: parse, call :class:`~presence.admin.Admin`, answer JSON."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import views
from ..admin import Admin
from ..core.model import PLANS, Domain, License, Pool
from ..errors import BadRequest
from ..storage import TokenGrant
from ..wire import is_text
from .guard import authenticated

ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MAX_COUNT = 1_000_000
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 315_576_000  # ten years of 365.25 days
T = TypeVar("T")

Handler = Callable[[Request, Admin, TokenGrant], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        admin: Admin = request.app.state.admin
        who = await authenticated_request(request, lambda: admin.authenticate(bearer(request)))
        # Every id in a path (domain, pool, user, lease) has the form of ids.
        for field, value in request.path_params.items():
            if not ID.fullmatch(value):
                raise BadRequest(field, f"{field} must match [a-z0-9][a-z0-9-]{{0,62}}.")
        return await handler(request, admin, who)

    return endpoint


async def authenticated_request(request: Request, authenticate: Callable[[], Awaitable[T]]) -> T:
    client = request.client
    address = client.host if client else "unknown"
    return await authenticated(request.app.state.gate, address, authenticate)


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("body", "The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("body", "The request body must be a JSON object.")
    return body


async def _optional_body(request: Request) -> dict[str, Any]:
    """A JSON object body that may be left out (an empty body is ``{}``)."""
    return await _body(request) if await request.body() else {}


def _id(body: dict[str, Any], field: str = "id") -> str:
    value = body.get(field)
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise BadRequest(field, f"{field} must match [a-z0-9][a-z0-9-]{{0,62}}.")
    return value


def _name(body: dict[str, Any], field: str = "name") -> str:
    value = body.get(field)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200 or not is_text(value):
        raise BadRequest(field, f"{field} must be text of 1 to 200 characters.")
    return value.strip()


def _count(body: dict[str, Any], field: str, default: int | None = None) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadRequest(field, f"{field} must be a whole number from 0 to {MAX_COUNT}.")
    return value


def _plan(body: dict[str, Any]) -> str:
    value = body.get("plan")
    if value not in PLANS:
        raise BadRequest("plan", f"plan must be one of {', '.join(PLANS)}.")
    return str(value)


def _license(value: Any) -> License:
    if not isinstance(value, dict):
        raise BadRequest("license", 'license must be {"model": "named" | "seat" | "none"}.')
    if value.get("model") not in ("named", "seat", "none"):
        raise BadRequest("license.model", 'model must be "named", "seat" or "none".')
    if value["model"] != "seat":
        return License(value["model"])
    pool = value.get("pool")
    if not isinstance(pool, str) or not ID.fullmatch(pool):
        raise BadRequest("license.pool", "A seat license names its pool id.")
    return License("seat", pool)


Parsers = dict[str, Callable[[dict[str, Any]], Any]]


def _changes(body: dict[str, Any], parsers: Parsers) -> dict[str, Any]:
    unknown = sorted(set(body) - set(parsers))
    if unknown:
        raise BadRequest(unknown[0], f"{unknown[0]} cannot be changed here.")
    return {field: parse(body) for field, parse in parsers.items() if field in body}


_DOMAIN_CHANGES: Parsers = {
    "name": _name,
    "plan": _plan,
    "named_licenses": lambda b: _count(b, "named_licenses"),
    "seat_licenses": lambda b: _count(b, "seat_licenses"),
}
_POOL_CHANGES: Parsers = {
    "name": _name,
    "seats": lambda b: _count(b, "seats"),
    "idle_logoff_s": lambda b: _count(b, "idle_logoff_s"),
}


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status)


async def create_domain(request: Request, admin: Admin, who: TokenGrant) -> Response:
    body = await _body(request)
    domain = Domain(
        _id(body), _name(body), _plan(body),  # type: ignore[arg-type]
        _count(body, "named_licenses", 0), _count(body, "seat_licenses", 0),
    )  # fmt: skip
    return _json(views.domain_view(await admin.create_domain(who, domain)), 201)


async def get_domain(request: Request, admin: Admin, who: TokenGrant) -> Response:
    return _json(views.domain_view(await admin.domain(who, request.path_params["domain"])))


async def patch_domain(request: Request, admin: Admin, who: TokenGrant) -> Response:
    changes = _changes(await _body(request), _DOMAIN_CHANGES)
    domain = await admin.update_domain(who, request.path_params["domain"], changes)
    return _json(views.domain_view(domain))


async def create_domain_token(request: Request, admin: Admin, who: TokenGrant) -> Response:
    body = await _body(request)
    label, expires_in = _token_options(body, {"role"})
    role = body.get("role")
    if role not in ("admin", "wallboard"):
        raise BadRequest("role", 'role must be "admin" or "wallboard".')
    token, secret = await admin.create_token(
        who, request.path_params["domain"], role, label=label, expires_in=expires_in
    )
    return _json(views.created_token_view(token, secret), 201)


async def list_tokens(request: Request, admin: Admin, who: TokenGrant) -> Response:
    tokens = await admin.tokens(who, request.path_params["domain"])
    return _json([views.token_view(token) for token in tokens])


async def revoke_token(request: Request, admin: Admin, who: TokenGrant) -> Response:
    await admin.revoke_token(who, request.path_params["domain"], request.path_params["token"])
    return Response(status_code=204)


def _token_options(body: dict[str, Any], more: set[str]) -> tuple[str | None, int | None]:
    """``label`` and ``expires_in`` of a new token; ``more`` are the other
    fields allowed. Unknown fields are refused: a misspelt ``expires_in``
    must not make a token that never expires."""
    unknown = sorted(set(body) - {"label", "expires_in", *more})
    if unknown:
        raise BadRequest(unknown[0], f"{unknown[0]} is not a field of a new token.")
    label = None if body.get("label") is None else _name(body, "label")
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN
    ):
        raise BadRequest(
            "expires_in",
            f"expires_in must be a whole number of seconds from {MIN_EXPIRES_IN} "
            f"(a minute) to {MAX_EXPIRES_IN} (ten years).",
        )
    return label, expires_in


async def list_pools(request: Request, admin: Admin, who: TokenGrant) -> Response:
    pools = await admin.pools(who, request.path_params["domain"])
    return _json([views.pool_view(pool, occupied) for pool, occupied in pools])


async def create_pool(request: Request, admin: Admin, who: TokenGrant) -> Response:
    body = await _body(request)
    pool = Pool(
        request.path_params["domain"], _id(body), _name(body), _count(body, "seats"),
        _count(body, "idle_logoff_s", 0),
    )  # fmt: skip
    return _json(views.pool_view(*await admin.create_pool(who, pool)), 201)


async def patch_pool(request: Request, admin: Admin, who: TokenGrant) -> Response:
    changes = _changes(await _body(request), _POOL_CHANGES)
    params = request.path_params
    pool = await admin.update_pool(who, params["domain"], params["pool"], changes)
    return _json(views.pool_view(*pool))


async def delete_pool(request: Request, admin: Admin, who: TokenGrant) -> Response:
    await admin.delete_pool(who, request.path_params["domain"], request.path_params["pool"])
    return Response(status_code=204)


async def list_users(request: Request, admin: Admin, who: TokenGrant) -> Response:
    users = await admin.users(who, request.path_params["domain"])
    return _json([views.user_view(user) for user in users])


async def create_user(request: Request, admin: Admin, who: TokenGrant) -> Response:
    body = await _body(request)
    email = body.get("email")
    if (
        not isinstance(email, str)
        or len(email) > 254
        or not EMAIL.fullmatch(email)
        or not is_text(email)
    ):
        raise BadRequest("email", "email must be an e-mail address.")
    user = await admin.create_user(
        who, request.path_params["domain"], email, _name(body), _license(body.get("license"))
    )
    return _json(views.user_view(user), 201)


async def put_license(request: Request, admin: Admin, who: TokenGrant) -> Response:
    license = _license(await _body(request))
    params = request.path_params
    user = await admin.set_license(who, params["domain"], params["user"], license)
    return _json(views.user_view(user))


async def delete_user(request: Request, admin: Admin, who: TokenGrant) -> Response:
    await admin.delete_user(who, request.path_params["domain"], request.path_params["user"])
    return Response(status_code=204)


async def create_user_token(request: Request, admin: Admin, who: TokenGrant) -> Response:
    label, expires_in = _token_options(await _optional_body(request), set())
    params = request.path_params
    token, secret = await admin.create_token(
        who, params["domain"], "user", params["user"], label=label, expires_in=expires_in
    )
    return _json(views.created_token_view(token, secret), 201)


async def presence(request: Request, admin: Admin, who: TokenGrant) -> Response:
    snapshot = await admin.presence(who, request.path_params["domain"])
    return _json(views.presence_view(snapshot.domain.id, snapshot.books, snapshot.named))


async def release_lease(request: Request, admin: Admin, who: TokenGrant) -> Response:
    params = request.path_params
    await admin.release(who, params["domain"], params["lease_id"])
    return Response(status_code=204)


async def events(request: Request, admin: Admin, who: TokenGrant) -> Response:
    after = _query_int(request, "after", 0, 2**62)
    limit = _query_int(request, "limit", 100, 1000, lowest=1)
    found = await admin.events(who, request.path_params["domain"], after, limit)
    return _json([views.event_view(e) for e in found])


async def usage(request: Request, admin: Admin, who: TokenGrant) -> Response:
    start = _query_time(request, "from") or 0.0
    end = _query_time(request, "to")
    report = await admin.usage(who, request.path_params["domain"], start, end)
    rows = [views.usage_view(pool) for pool in report]
    if "text/csv" in request.headers.get("accept", ""):
        return Response(views.usage_csv(rows), media_type="text/csv")
    return _json(rows)


def _query(request: Request, field: str) -> str | None:
    """The query parameter ``field``; absent or empty is ``None``, given twice is refused."""
    values = request.query_params.getlist(field)
    if len(values) > 1:
        raise BadRequest(field, f"{field} may be given once.")
    return values[0] if values and values[0] else None


def _query_time(request: Request, field: str) -> float | None:
    text = _query(request, field)
    if text is None:
        return None
    try:
        at: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        at = None
    # Python 3.11's fromisoformat takes a time followed by a NUL.
    if at is None or not (text.isascii() and text.isprintable()):
        raise BadRequest(field, f"{field} must be an ISO 8601 time.")
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _query_int(request: Request, field: str, default: int, highest: int, lowest: int = 0) -> int:
    text = _query(request, field)
    if text is None:
        return default
    # str.isdigit() and int() take other scripts' digits too (², ١), and int()
    # refuses thousands of digits with ValueError: ASCII digits, few of them.
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > len(str(highest))
        or not lowest <= int(text) <= highest
    ):
        raise BadRequest(field, f"{field} must be a whole number from {lowest} to {highest}.")
    return int(text)


D = "/api/v1/domains/{domain}"
routes = [
    Route("/api/v1/domains", _endpoint(create_domain), methods=["POST"]),
    Route(D, _endpoint(get_domain), methods=["GET"]),
    Route(D, _endpoint(patch_domain), methods=["PATCH"]),
    Route(D + "/tokens", _endpoint(create_domain_token), methods=["POST"]),
    Route(D + "/tokens", _endpoint(list_tokens), methods=["GET"]),
    Route(D + "/tokens/{token}", _endpoint(revoke_token), methods=["DELETE"]),
    Route(D + "/pools", _endpoint(list_pools), methods=["GET"]),
    Route(D + "/pools", _endpoint(create_pool), methods=["POST"]),
    Route(D + "/pools/{pool}", _endpoint(patch_pool), methods=["PATCH"]),
    Route(D + "/pools/{pool}", _endpoint(delete_pool), methods=["DELETE"]),
    Route(D + "/users", _endpoint(list_users), methods=["GET"]),
    Route(D + "/users", _endpoint(create_user), methods=["POST"]),
    Route(D + "/users/{user}/license", _endpoint(put_license), methods=["PUT"]),
    Route(D + "/users/{user}", _endpoint(delete_user), methods=["DELETE"]),
    Route(D + "/users/{user}/tokens", _endpoint(create_user_token), methods=["POST"]),
    Route(D + "/presence", _endpoint(presence), methods=["GET"]),
    Route(D + "/leases/{lease_id}", _endpoint(release_lease), methods=["DELETE"]),
    Route(D + "/events", _endpoint(events), methods=["GET"]),
    Route(D + "/usage", _endpoint(usage), methods=["GET"]),
]

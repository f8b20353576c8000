"""The admin API's requests as types: bodies, query parameters and path ids.

Each type is declared once, with its limits; pydantic checks requests against
it (:func:`parse_body`, :func:`parse_query`) and writes the JSON Schema that
the OpenAPI document (:mod:`.openapi`) publishes, so what is checked and what
is described cannot drift apart. A request that does not fit is refused with
:exc:`~presence.errors.BadRequest` naming the field at fault.

Bodies are strict: numbers are JSON numbers (not strings, not booleans),
unknown fields are refused (a misspelt ``expires_in`` must not make a token
that never expires), and ``null`` is refused where a field is only optional.
Unknown query parameters are refused too: a misspelt ``from`` must not
silently report on all time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from starlette.datastructures import QueryParams
from typing_extensions import TypedDict

from ..core.model import License
from ..errors import BadRequest
from ..views import EventType

MAX_COUNT = 1_000_000
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 315_576_000  # ten years of 365.25 days
MAX_EVENT_ID = 2**62

Id = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$"),
    Field(description="an id: a lowercase letter or digit, then up to 62 more or hyphens"),
]
# What str.strip() drops, spelt out: regex engines differ on what \s means.
_SPACE = "".join(f"\\u{c:04x}" for c in range(0x10000) if chr(c).isspace())
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=200,
        pattern=rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$",
    ),
    Field(description="text of 1 to 200 characters, not only spaces (spaces around are dropped)"),
]
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$"),
    Field(description="an e-mail address of up to 254 characters"),
]


def _integral(value: Any) -> Any:
    """JSON Schema counts 300.0 as an integer; so do we (but not "300" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integral = BeforeValidator(_integral)
Count = Annotated[
    int, Field(ge=0, le=MAX_COUNT, description=f"a whole number from 0 to {MAX_COUNT}"), Integral
]
Plan = Literal["standard", "business", "enterprise"]
ExpiresIn = Annotated[
    int,
    Field(
        ge=MIN_EXPIRES_IN,
        le=MAX_EXPIRES_IN,
        description=f"a whole number of seconds from {MIN_EXPIRES_IN} (a minute) to "
        f"{MAX_EXPIRES_IN} (ten years); left out, the token is valid until revoked",
    ),
    Integral,
]


AlertInterval = Annotated[
    int,
    Field(
        ge=1,
        le=86_400,
        description="a whole number of seconds from 1 to 86400: how long a capacity "
        "condition must last before it is alerted (and between pool_full alerts)",
    ),
    Integral,
]
AlertThreshold = Annotated[
    int,
    Field(
        ge=1,
        le=100,
        description="a percentage from 1 to 100: pool_near_capacity once this share of "
        "the seats stays occupied for alert_interval_s (null: no such alert)",
    ),
    Integral,
]
WebhookUrl = Annotated[
    str,
    StringConstraints(max_length=2000),
    Field(
        description="an https:// URL whose host resolves to public addresses only "
        "(unless the server allows private ones)"
    ),
]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=100, description="event types to deliver (default: all)"),
]
Description = Annotated[
    str, StringConstraints(max_length=500), Field(description="text of up to 500 characters")
]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NewDomain(Body):
    id: Id
    name: Name
    plan: Plan
    named_licenses: Count = 0
    seat_licenses: Count = 0


@with_config(ConfigDict(strict=True, extra="forbid"))
class DomainChanges(TypedDict, total=False):
    name: Name
    plan: Plan
    named_licenses: Count
    seat_licenses: Count


class NewPool(Body):
    id: Id
    name: Name
    seats: Count
    idle_logoff_s: Count = Field(
        0,
        description=f"a whole number of seconds from 0 to {MAX_COUNT}: how long a seat "
        "may be held without a call before it is freed (0: for ever)",
    )
    alert_interval_s: AlertInterval = 300
    alert_threshold_pct: AlertThreshold | None = None


@with_config(ConfigDict(strict=True, extra="forbid"))
class PoolChanges(TypedDict, total=False):
    name: Name
    seats: Count
    idle_logoff_s: Count
    alert_interval_s: AlertInterval
    alert_threshold_pct: AlertThreshold | None


class NamedLicense(Body):
    model: Literal["named"]


class SeatLicense(Body):
    model: Literal["seat"]
    pool: Id


class NoLicense(Body):
    model: Literal["none"]


LicenseBody = Annotated[NamedLicense | SeatLicense | NoLicense, Discriminator("model")]


def license_of(body: NamedLicense | SeatLicense | NoLicense) -> License:
    return License("seat", body.pool) if isinstance(body, SeatLicense) else License(body.model)


class NewUser(Body):
    email: Email
    name: Name
    license: LicenseBody


class IdentityBody(Body):
    issuer: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2000),
        Field(description="the identity provider's issuer URL, https://"),
    ]
    audience: Annotated[
        str,
        StringConstraints(min_length=1, max_length=500),
        Field(description="the audience its ID tokens are for (the client id)"),
    ]
    email_claim: Annotated[
        str,
        StringConstraints(min_length=1, max_length=100),
        Field(description="the claim holding the user's e-mail address"),
    ] = "email"
    provision: LicenseBody | None = Field(
        None, description="the license of users created at their first sign-in (null: none)"
    )


class NewUserToken(Body):
    label: Name | None = None
    expires_in: ExpiresIn | None = None


class NewDomainToken(NewUserToken):
    role: Literal["admin", "wallboard"]


class NewWebhook(Body):
    url: WebhookUrl
    events: EventTypes | None = None
    description: Description | None = None


@with_config(ConfigDict(strict=True, extra="forbid"))
class WebhookChanges(TypedDict, total=False):
    url: WebhookUrl
    events: EventTypes | None
    description: Description | None
    enabled: bool


# Query parameters arrive as text. Numbers are ASCII digits only: int() takes
# other scripts' digits (², ١), signs, spaces and underscores.


def _digits(value: Any) -> Any:
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) < 20):
        raise ValueError("not a whole number written in digits")
    return int(value) if isinstance(value, str) else value


def _time(value: Any) -> Any:
    # Python 3.11's fromisoformat takes a time followed by a NUL.
    if not isinstance(value, str) or not (value.isascii() and value.isprintable()):
        raise ValueError("not an ISO 8601 time")
    at = datetime.fromisoformat(value.upper())
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


Digits = BeforeValidator(_digits)
Time = Annotated[
    float,
    BeforeValidator(_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
    Field(description="an ISO 8601 time (without a zone: UTC)"),
]


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Period(Query):
    start: Time | None = Field(None, alias="from")
    end: Time | None = Field(None, alias="to")


class SeriesQuery(Period):
    step: Annotated[
        int,
        Field(ge=60, le=86_400, description="a whole number of seconds per point, 60 to 86400"),
        Digits,
    ] = 3600


EventId = Annotated[int, Field(ge=0, le=MAX_EVENT_ID), Digits]


class EventsQuery(Period):
    after: EventId = Field(0, description="an event id: only events after it")
    before: EventId | None = Field(
        None, description="an event id: the page of events just before it, oldest first"
    )
    limit: Annotated[
        int,
        Field(ge=1, le=1000, description="a whole number of events per page, 1 to 1000"),
        Digits,
    ] = 100
    type: list[EventType] = Field(
        default_factory=list, description="event types: only events of these (repeat for several)"
    )
    user_id: Id | None = None
    pool: Id | None = None


class DeliveriesQuery(Query):
    limit: Annotated[
        int,
        Field(ge=1, le=1000, description="a whole number of attempts, 1 to 1000"),
        Digits,
    ] = 100


Q = TypeVar("Q", bound="Query")


def parse_body(kind: Any, raw: bytes) -> Any:
    """The request body ``raw`` as a ``kind`` (a model, a TypedDict or a union of
    them); :exc:`BadRequest` if it is not one."""
    try:
        return _adapter(kind).validate_json(raw or b"{}")
    except ValidationError as error:
        raise _bad_request(error, kind) from None


def parse_query(kind: type[Q], params: QueryParams) -> Q:
    """The query string as a ``kind``. Each parameter may be given once, but for lists."""
    fields = kind.model_fields
    data: dict[str, Any] = {}
    for key in params:
        values = params.getlist(key)
        field = next((f for name, f in fields.items() if key in (name, f.alias)), None)
        listed = field is not None and getattr(field.annotation, "__origin__", None) is list
        if len(values) > 1 and not listed:
            raise BadRequest(key, f"{key} may be given once.")
        present = [v for v in values if v]  # an empty parameter is left out
        if present:
            data[key] = present if listed else present[0]
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        raise _bad_request(error, kind) from None


def parse_id(field: str, value: str) -> str:
    """A path parameter, which every path names with an id."""
    try:
        return str(_adapter(Id).validate_python(value))
    except ValidationError:
        raise BadRequest(field, f"{field} must match [a-z0-9][a-z0-9-]{{0,62}}.") from None


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    adapter = _adapters.get(kind)
    if adapter is None:
        adapter = _adapters[kind] = TypeAdapter(kind)
    return adapter


def _bad_request(error: ValidationError, kind_of: Any) -> BadRequest:
    first = error.errors(include_url=False)[0]
    kind = first["type"]
    if kind == "json_invalid":
        return BadRequest("body", "The request body must be JSON.")
    # A tagged union adds the tag to the path: license.seat.pool is license.pool;
    # a list adds the index of the item at fault: events.1 is events.
    path = [
        str(part)
        for part in first["loc"]
        if part not in ("named", "seat", "none") and not isinstance(part, int)
    ]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = ".".join([*path, "model"])
        return BadRequest(field, f'{field} must be "named", "seat" or "none".')
    if not path:
        return BadRequest("body", "The request body must be a JSON object.")
    field = ".".join(path)
    if kind == "missing":
        return BadRequest(field, f"{field} is required.")
    if kind == "extra_forbidden":
        return BadRequest(field, f"{field} is not a field of this request.")
    described = _described(kind_of).get(field) if kind not in _OWN_WORDS else None
    if described:
        return BadRequest(field, f"{field} must be {described}.")
    message = str(first["ctx"]["error"]) if kind == "value_error" else first["msg"]
    return BadRequest(field, f"{field}: {message}.")


# Errors whose own message says more than the field's description.
_OWN_WORDS = {"literal_error", "enum", "union_tag_invalid", "union_tag_not_found"}


def _described(kind: Any) -> dict[str, str]:
    """The descriptions of ``kind``'s fields, by name (as written in requests)."""
    properties = _adapter(kind).json_schema(by_alias=True).get("properties", {})
    return {name: p.get("description", "") for name, p in properties.items()}

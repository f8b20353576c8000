"""The OpenAPI 3.1 document of the admin API, made from its operations' types.

Request bodies and query parameters are described by the pydantic types that
check them (:mod:`.models`), answers by the typed views that build them
(:mod:`presence.views`); nothing here is written by hand but the words.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from ..views import ErrorView
from .models import Id

if TYPE_CHECKING:
    from .api import Operation

REFS = "#/components/schemas/{model}"
#: Refusals any operation may give, by status.
COMMON = {
    400: "The request does not fit: `bad_request`, with the `field` at fault.",
    401: "No valid bearer token: `unauthorized`.",
    403: "The token's role may not do this: `forbidden`.",
    404: "No such domain (or not the token's), pool, user, token or lease: `not_found`.",
    429: "Too many failed authentications from this address: `rate_limited`.",
    503: "The database cannot be reached now: `unavailable`; retry.",
}
REFUSALS = {
    409: "A licensing rule refused the change: `plan_required`, `license_limit`, "
    "`seats_exceed_licenses`, `pool_not_empty`, `email_taken` or `already_exists`.",
    413: "The request body is over 64 KiB: `too_large`.",
}
INFO = {
    "title": "presence admin API",
    "version": "1",
    "description": "Domains, seat pools, users and their licenses, tokens, live presence, "
    "the event log and usage. Every request carries `Authorization: Bearer <token>`; "
    'errors are `{"error": {"code", "message", "field"?}}`.',
}


class _Schemas:
    """JSON Schemas of types, their named parts gathered as components."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, kind: Any, mode: str = "validation") -> dict[str, Any]:
        schema = TypeAdapter(kind).json_schema(ref_template=REFS, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        title = schema.get("title")
        if schema.get("type") == "object" and title:  # a named type: a component of its own
            self.components[title] = schema
            return {"$ref": REFS.format(model=title)}
        return schema


def document(operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI document of ``operations``."""
    schemas = _Schemas()
    error = schemas.of(ErrorView, "serialization")
    id_schema = schemas.of(Id)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        described: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.handler.__name__,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": id_schema}
                for name in re.findall(r"{(\w+)}", op.path)
            ],
            "responses": _responses(op, schemas, error),
        }
        if op.query is not None:
            described["parameters"] += _query_parameters(op.query, schemas)
        if op.body is not None:
            described["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schemas.of(op.body)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = described
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _responses(op: Operation, schemas: _Schemas, error: dict[str, Any]) -> dict[str, Any]:
    if op.response is None:
        answers: dict[str, Any] = {"204": {"description": "Done."}}
    else:
        content = {"application/json": {"schema": schemas.of(op.response, "serialization")}}
        if op.csv is not None:
            content["text/csv"] = {"schema": {"type": "string"}}
        answers = {str(op.status): {"description": "Done.", "content": content}}
    refusals = {**COMMON, **{status: REFUSALS[status] for status in op.refusals}}
    if op.body is not None:
        refusals[413] = REFUSALS[413]
    for status, description in sorted(refusals.items()):
        answers[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": error}},
        }
    return answers


def _query_parameters(query: Any, schemas: _Schemas) -> list[dict[str, Any]]:
    described = TypeAdapter(query).json_schema(ref_template=REFS)
    schemas.components.update(described.pop("$defs", {}))
    properties = described["properties"]
    parameters = []
    for name, field in query.model_fields.items():
        key = field.alias or name
        schema = _without_null(properties[key])
        parameter = {"name": key, "in": "query", "required": False, "schema": schema}
        if schema.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or has a value; it is never ``null``."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]}

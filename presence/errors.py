"""Every error that reaches a client.

Each error carries a stable ``code`` from the public contract and a message
written for a person. The web layer turns them into HTTP responses, the device
endpoint into ``error`` frames.

* :exc:`PresenceError`
    * :exc:`BadRequest` (``bad_request`` 400, with the field at fault)
    * :exc:`Unauthorized` (``unauthorized`` 401)
    * :exc:`Forbidden` (``forbidden`` 403)
    * :exc:`NotFound` (``not_found`` 404)
    * :exc:`RuleViolation` (409: ``plan_required``, ``license_limit``,
      ``seats_exceed_licenses``, ``pool_not_empty``, ``email_taken``,
      ``already_exists``)
    * :exc:`TooLarge` (``too_large`` 413: a request body over the limit)
    * :exc:`RateLimited` (``rate_limited`` 429: too many failed authentications)
    * :exc:`StorageError` (``unavailable`` 503: the database failed)
        * :exc:`Overloaded` (``unavailable`` 503: work arrives faster than it is done)
"""

from __future__ import annotations


class PresenceError(Exception):
    """Base class of every error with a client-facing code."""

    code = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(PresenceError):
    code = "bad_request"
    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(PresenceError):
    code = "unauthorized"
    status = 401


class Forbidden(PresenceError):
    code = "forbidden"
    status = 403


class NotFound(PresenceError):
    code = "not_found"
    status = 404


class RuleViolation(PresenceError):
    """A change that would break a licensing rule; ``code`` names the rule."""

    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TooLarge(PresenceError):
    code = "too_large"
    status = 413


class RateLimited(PresenceError):
    code = "rate_limited"
    status = 429


class StorageError(PresenceError):
    code = "unavailable"
    status = 503


class Overloaded(StorageError):
    """Logins arrive faster than the node, or the database, takes them."""

    def __init__(self) -> None:
        super().__init__("The server is busy with logins; try again in a moment.")

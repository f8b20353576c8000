"""The errors of the device client; the tree is in :mod:`presence.client`."""

from __future__ import annotations

from typing import Any, Self


class PresenceError(Exception):
    """Base class of the client's errors."""


class ConnectionFailed(PresenceError):
    """``start()`` could not open a connection to a presence server at the URL."""


class ProtocolViolation(PresenceError):
    """``start()`` got an answer that is not the protocol, or none in time."""


class ClientStopped(PresenceError):
    """The client stopped (``stop()``, or a final end) before the request was done."""


class Refusal(PresenceError):
    """An ``error`` of the server: ``code``, ``message`` (for a person) and
    ``retryable`` (whether the same request may succeed later)."""

    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable

    @classmethod
    def of(cls, error: dict[str, Any]) -> Self:
        """The refusal an ``error`` message says."""
        return cls(str(error.get("code")), str(error.get("message")), bool(error.get("retryable")))

    def as_message(self) -> dict[str, Any]:
        """The ``error`` message of this refusal."""
        error = {"type": "error", "code": self.code, "message": self.message}
        return error | {"retryable": self.retryable}


class LoginRefused(Refusal):
    """``start()``'s login was refused (``seat_occupied``, ``already_logged_in``,
    ``no_license``, ``unauthorized``...); the client is stopped."""


class CallRefused(Refusal):
    """A call was refused (``call_in_progress``, ``unknown_call``...), or
    ``not_logged_in``: the client holds no license now (it is reconnecting)."""

"""The device client of the presence server: log in once, keep the login.

    from presence.client import Client, LoginRefused

    async with Client("ws://host:8000/ws/device", token="prs_...",
                      device_id="ann-pc", kind="desktop", name="Ann's PC") as client:
        print(client.license)            # the welcome's license, None while reconnecting
        async with client.call("c-1"):   # call_start ... call_end
            ...
        async for message in client.messages():
            ...

A domain that signs in with its identity provider (OpenID Connect) gives
``domain="acme", get_id_token=fetch_id_token`` (or ``id_token="eyJ..."``)
instead of ``token``: the callable is awaited before each connection.

After :meth:`Client.start` the client keeps the login by itself
(docs/clients.md): it sends the heartbeats at the interval the server asks for,
notices a connection that died (closed, or silent for a heartbeat interval
after a heartbeat, which TCP alone may not notice for minutes) and connects
again, with exponential backoff and full jitter, forever until
:meth:`Client.stop` or a final end of its session (``taken_over``,
``replaced``, ``idle_logoff``, ``user_deleted``, ``released_by_admin``,
``token_revoked``, or a token refused on connecting again). Coming back
from the same device within the lease time gets the same seat again, with a
higher ``fencing_token`` (S3, S10). A new connection refused its seat (taken
meanwhile) stays connected and asks again when availability shows a free
one. Calls end with their connection and are not resumed.

Errors, all from :exc:`PresenceError`:

* :exc:`PresenceError`
    * :exc:`ConnectionFailed`: ``start()`` reached no server at the URL (not a
      ``ws://`` or ``wss://`` URL, a connection refused, a failed handshake).
    * :exc:`ProtocolViolation`: ``start()`` got an answer that is not the
      protocol, or none within ``timeout``.
    * :exc:`ClientStopped`: the client stopped before ``start()`` or
      ``call()`` was done.
    * :exc:`Refusal`: an ``error`` of the server, with ``code``, ``message``
      and ``retryable``.
        * :exc:`LoginRefused`: ``start()``'s login (the client is stopped).
        * :exc:`CallRefused`: a call, or ``not_logged_in`` while reconnecting.
"""

from .errors import (
    CallRefused,
    ClientStopped,
    ConnectionFailed,
    LoginRefused,
    PresenceError,
    ProtocolViolation,
    Refusal,
)
from .login import Client, Messages, State

__all__ = [
    "CallRefused",
    "Client",
    "ClientStopped",
    "ConnectionFailed",
    "LoginRefused",
    "Messages",
    "PresenceError",
    "ProtocolViolation",
    "Refusal",
    "State",
]

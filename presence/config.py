"""Server configuration: environment variables, each but the admin token also
a flag of ``serve``.

No secret is taken from a flag, which every user of the machine can read in
the process list: the server admin token comes from ``PRESENCE_ADMIN_TOKEN``
or from a file (:func:`secret_from_file`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    database: str = "sqlite:///presence.db"
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: str | None = None
    heartbeat_interval: float = 10.0
    lease_ttl: float = 30.0
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    metrics_need_token: bool = False
    max_connections_per_address: int = 5000
    auth_failures_per_minute: int = 10
    hello_timeout: float = 5.0
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0
    webhook_retry_scale: float = 1.0
    oidc_allow_http: bool = False
    oidc_refetch_interval: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """Read ``PRESENCE_*`` variables (and ``PORT``), defaulting the rest."""
        port = env.get("PRESENCE_PORT") or env.get("PORT") or "8000"
        origins = env.get("PRESENCE_ALLOWED_ORIGINS", "")
        return cls(
            database=env.get("PRESENCE_DATABASE", cls.database),
            host=env.get("PRESENCE_HOST", cls.host),
            port=int(port),
            admin_token=env.get("PRESENCE_ADMIN_TOKEN") or None,
            heartbeat_interval=float(env.get("PRESENCE_HEARTBEAT_INTERVAL", "10")),
            lease_ttl=float(env.get("PRESENCE_LEASE_TTL", "30")),
            allowed_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            metrics_need_token=env.get("PRESENCE_METRICS_NEED_TOKEN", "") in ("1", "true"),
            max_connections_per_address=int(
                env.get("PRESENCE_MAX_CONNECTIONS_PER_ADDRESS", "5000")
            ),
            auth_failures_per_minute=int(env.get("PRESENCE_AUTH_FAILURES_PER_MINUTE", "10")),
            webhook_allow_private=env.get("PRESENCE_WEBHOOK_ALLOW_PRIVATE", "") in ("1", "true"),
            webhook_timeout=float(env.get("PRESENCE_WEBHOOK_TIMEOUT", "10")),
            webhook_retry_scale=float(env.get("PRESENCE_WEBHOOK_RETRY_SCALE", "1")),
            oidc_allow_http=env.get("PRESENCE_OIDC_ALLOW_HTTP", "") in ("1", "true"),
            oidc_refetch_interval=float(env.get("PRESENCE_OIDC_REFETCH_INTERVAL", "60")),
        )


def secret_from_file(path: str) -> str:
    """The secret a file holds, without its trailing newline.

    Raises :exc:`ValueError`, with a message for the operator, if the file
    cannot be read, is empty, or holds more than one line.
    """
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not secret:
        raise ValueError(f"{path} is empty")
    if "\n" in secret or "\r" in secret:
        raise ValueError(f"{path} holds more than one line; put the secret alone on one line")
    return secret

"""Server configuration: environment variables, each also a flag of ``serve``."""

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
        )

"""The ``presence`` command: ``presence serve`` runs one node."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import uvicorn

from .config import Config
from .coordinator import Coordinator
from .web.app import create_app
from .wire import MAX_FRAME


class _Server(uvicorn.Server):
    """Ends device sessions with ``server_shutdown`` before uvicorn closes sockets."""

    def __init__(self, config: uvicorn.Config, coordinator: Coordinator) -> None:
        super().__init__(config)
        self.coordinator = coordinator

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await self.coordinator.end_sessions()
        await super().shutdown(sockets)


def _parser(defaults: Config) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="presence", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a server node")
    serve.add_argument(
        "--database",
        default=defaults.database,
        help="sqlite:///file.db or postgresql://... (PRESENCE_DATABASE)",
    )
    serve.add_argument("--host", default=defaults.host, help="PRESENCE_HOST")
    serve.add_argument("--port", type=int, default=defaults.port, help="PRESENCE_PORT or PORT")
    serve.add_argument(
        "--admin-token",
        default=defaults.admin_token,
        help="server admin token (PRESENCE_ADMIN_TOKEN)",
    )
    serve.add_argument(
        "--heartbeat-interval",
        type=float,
        default=defaults.heartbeat_interval,
        help="seconds between device heartbeats (PRESENCE_HEARTBEAT_INTERVAL)",
    )
    serve.add_argument(
        "--lease-ttl",
        type=float,
        default=defaults.lease_ttl,
        help="seconds without a message before a lease expires (PRESENCE_LEASE_TTL)",
    )
    serve.add_argument(
        "--allowed-origins",
        default=",".join(defaults.allowed_origins),
        help="comma-separated browser origins (PRESENCE_ALLOWED_ORIGINS)",
    )
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    defaults = Config.from_env(os.environ)
    args = _parser(defaults).parse_args(argv)
    config = replace(
        defaults,
        database=args.database,
        host=args.host,
        port=args.port,
        admin_token=args.admin_token or None,
        heartbeat_interval=args.heartbeat_interval,
        lease_ttl=args.lease_ttl,
        allowed_origins=tuple(o.strip() for o in args.allowed_origins.split(",") if o.strip()),
    )
    if config.lease_ttl <= 0 or config.heartbeat_interval <= 0:
        sys.exit("presence: --lease-ttl and --heartbeat-interval must be positive")
    app = create_app(config)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            ws_max_size=16 * MAX_FRAME,
            ws_ping_interval=None,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=5,
        ),
        app.state.coordinator,
    )
    server.run()

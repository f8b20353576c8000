"""The ``presence`` command: ``presence serve`` runs one node (``--demo``: with a
demo domain and simulated devices); ``presence simulate`` runs the simulated
devices against any server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import urllib.error
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import uvicorn

from . import demo, workers
from .config import Config, secret_from_file
from .node import Node
from .web.app import create_app
from .web.guard import Gate
from .web.http import HeadersDeadline

logger = logging.getLogger(__name__)

#: A job run beside the server until the event is set, e.g. the demo's devices.
Background = Callable[[asyncio.Event], Awaitable[None]]

#: How long the background job may take to wind down (the demo's devices log out).
BACKGROUND_STOP_TIMEOUT = 5.0
#: How a node runs uvicorn, besides its app, address and lifespan (the
#: benchmark's bare Starlette server runs with the same). uvloop and httptools
#: spend about half the CPU of asyncio's loop and h11 per heartbeat and per
#: login; WebSockets are the node's own (``web/http.py``): docs/PERFORMANCE.md.
UVICORN_SETTINGS: dict[str, Any] = {
    "backlog": workers.LISTEN_BACKLOG,
    "loop": "uvloop",
    "log_level": "info",
    "timeout_graceful_shutdown": 5,
}
#: Allocations between collections of the youngest objects (Python: 700).
GC_THRESHOLD = 10_000
#: The open-files limit asked for when the hard limit is unlimited (Linux's
#: default fs.nr_open).
MAX_OPEN_FILES = 1 << 20


class _Server(uvicorn.Server):
    """Runs ``background`` once serving, and ends it, then device sessions (with
    ``server_shutdown``), before uvicorn closes sockets."""

    def __init__(self, config: uvicorn.Config, node: Node, background: Background | None) -> None:
        super().__init__(config)
        self.node = node
        self.background = background
        self._stop = asyncio.Event()
        self._job: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up made (the code, the app, the node's store and tasks) lives
        # as long as the process: out of every collection, so that a full one
        # scans the sessions only (docs/PERFORMANCE.md).
        gc.freeze()
        if self.background is not None and not self.should_exit:
            self._job = asyncio.create_task(self._run_background(self.background))

    async def _run_background(self, background: Background) -> None:
        try:
            await background(self._stop)
        except Exception:
            logger.exception("the background job failed")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._job is not None:
            self._stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._job, BACKGROUND_STOP_TIMEOUT)
        await self.node.end_sessions()
        await super().shutdown(sockets)


def _parser(defaults: Config) -> argparse.ArgumentParser:
    # No abbreviations: the removed --admin-token must not pass for --admin-token-file.
    parser = argparse.ArgumentParser(prog="presence", description=__doc__, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a server node", allow_abbrev=False)
    serve.add_argument(
        "--database",
        default=defaults.database,
        help="sqlite:///file.db or postgresql://... (PRESENCE_DATABASE)",
    )
    serve.add_argument("--host", default=defaults.host, help="PRESENCE_HOST")
    serve.add_argument("--port", type=int, default=defaults.port, help="PRESENCE_PORT or PORT")
    serve.add_argument(
        "--admin-token-file",
        metavar="PATH",
        help="read the server admin token from this file (else PRESENCE_ADMIN_TOKEN)",
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
    serve.add_argument(
        "--max-connections-per-address",
        type=int,
        default=defaults.max_connections_per_address,
        help="open WebSockets one client address may hold (PRESENCE_MAX_CONNECTIONS_PER_ADDRESS)",
    )
    serve.add_argument(
        "--auth-failures-per-minute",
        type=int,
        default=defaults.auth_failures_per_minute,
        help="failed authentications after which an address is refused for a minute "
        "(PRESENCE_AUTH_FAILURES_PER_MINUTE)",
    )
    serve.add_argument(
        "--webhook-allow-private",
        action="store_true",
        default=defaults.webhook_allow_private,
        help="let webhooks reach private, loopback and link-local addresses, and http:// "
        "(PRESENCE_WEBHOOK_ALLOW_PRIVATE=1; on-premises and tests)",
    )
    serve.add_argument(
        "--webhook-timeout",
        type=float,
        default=defaults.webhook_timeout,
        help="seconds a webhook endpoint has to answer a delivery (PRESENCE_WEBHOOK_TIMEOUT)",
    )
    serve.add_argument(
        "--webhook-retry-scale",
        type=float,
        default=defaults.webhook_retry_scale,
        help="multiplies the webhook retry waits and the day before an endpoint is "
        "disabled, for tests (PRESENCE_WEBHOOK_RETRY_SCALE)",
    )
    serve.add_argument(
        "--oidc-allow-http",
        action="store_true",
        default=defaults.oidc_allow_http,
        help="accept http:// identity providers, and ones on private addresses "
        "(PRESENCE_OIDC_ALLOW_HTTP=1; on premises, tests)",
    )
    serve.add_argument(
        "--oidc-refetch-interval",
        type=float,
        default=defaults.oidc_refetch_interval,
        help="seconds before an identity provider's keys are fetched again for an unknown "
        "key id (PRESENCE_OIDC_REFETCH_INTERVAL; tests)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create a demo domain if missing, print its wallboard URL, run simulated devices",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N nodes in N processes on one port (postgresql:// only)",
    )
    simulate = commands.add_parser(
        "simulate", help="run simulated devices against a server", allow_abbrev=False
    )
    simulate.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    simulate.add_argument(
        "--admin-token-file",
        metavar="PATH",
        help="read the server admin token from this file (else PRESENCE_ADMIN_TOKEN)",
    )
    simulate.add_argument("--domain", default="demo", help="domain to use, created if missing")
    simulate.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: at Ctrl-C)"
    )
    return parser  # fmt: skip


def raise_open_files_limit() -> int:
    """Let this process open as many files as it may (each device's connection
    is one; the soft limit is often 1,024): the soft limit up to the hard one.
    Return the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # the system allows less: keep soft
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> None:
    defaults = Config.from_env(os.environ)
    args = _parser(defaults).parse_args(argv)
    admin_token = defaults.admin_token
    if args.admin_token_file is not None:
        try:
            admin_token = secret_from_file(args.admin_token_file)
        except ValueError as exc:
            sys.exit(f"presence {args.command}: --admin-token-file: {exc}")
    if args.command == "simulate":
        _simulate(args, admin_token)
    else:
        _serve(args, replace(defaults, admin_token=admin_token))


def _serve(args: argparse.Namespace, defaults: Config) -> None:
    config = replace(
        defaults,
        database=args.database,
        host=args.host,
        port=args.port,
        heartbeat_interval=args.heartbeat_interval,
        lease_ttl=args.lease_ttl,
        allowed_origins=tuple(o.strip() for o in args.allowed_origins.split(",") if o.strip()),
        max_connections_per_address=args.max_connections_per_address,
        auth_failures_per_minute=args.auth_failures_per_minute,
        webhook_allow_private=args.webhook_allow_private,
        webhook_timeout=args.webhook_timeout,
        webhook_retry_scale=args.webhook_retry_scale,
        oidc_allow_http=args.oidc_allow_http,
        oidc_refetch_interval=args.oidc_refetch_interval,
    )
    if min(config.lease_ttl, config.heartbeat_interval, config.webhook_timeout) <= 0:
        sys.exit(
            "presence: --lease-ttl, --heartbeat-interval and --webhook-timeout must be positive"
        )
    if config.webhook_retry_scale <= 0 or config.oidc_refetch_interval <= 0:
        sys.exit("presence: --webhook-retry-scale and --oidc-refetch-interval must be positive")
    background: Background | None = None
    if args.demo:
        # The demo needs the admin token; a generated one is stored hashed, so make our
        # own, for this run. Configured like any other, it revokes a generated one.
        token = config.admin_token or secrets.token_urlsafe(24)
        url = _local_url(config.host, config.port)
        if config.admin_token is None:
            print(f"Demo server admin token (this run only): {token}", flush=True)
            print(f"Admin console: {url.rstrip('/')}/admin#token={token}", flush=True)
            config = replace(config, admin_token=token)
        say = functools.partial(print, flush=True)
        background = functools.partial(demo.run, url, token, say=say)
    if args.workers == 1:
        _run_node(config, background=background)
        return
    if args.workers < 1 or args.demo or not config.database.startswith("postgres"):
        sys.exit("presence: --workers N needs N >= 1, a postgresql:// database, and no --demo")
    workers.supervise(config, args.workers, _run_node)


def _run_node(
    config: Config,
    sockets: list[socket.socket] | None = None,
    gate: Gate | None = None,
    background: Background | None = None,
) -> None:
    """Run one node in this process until it is told to stop; ``sockets`` and
    ``gate``: a worker's, shared with the others."""
    app = create_app(config, gate)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            http=HeadersDeadline,
            ws="none",
            lifespan="on",
            **UVICORN_SETTINGS,
        ),
        app.node,
        background,
    )
    files = raise_open_files_limit()
    print(f"presence: up to {files:,} open files (a device's connection is one)", flush=True)
    # Sessions are long-lived objects: collect young objects less often
    # (docs/PERFORMANCE.md).
    gc.set_threshold(GC_THRESHOLD)
    server.run(sockets)


def _local_url(host: str, port: int) -> str:
    """The URL this machine reaches a server listening on ``host`` at."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _simulate(args: argparse.Namespace, admin_token: str | None) -> None:
    if admin_token is None:
        sys.exit("presence simulate: give --admin-token-file or set PRESENCE_ADMIN_TOKEN")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        asyncio.run(_run_simulation(args.url, admin_token, args.domain, args.seconds))
    except (demo.ApiError, urllib.error.URLError) as exc:
        sys.exit(f"presence simulate: {exc}")


async def _run_simulation(url: str, admin_token: str, domain: str, seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)
    await demo.run(url, admin_token, stop, domain, say=functools.partial(print, flush=True))

"""Storage backends behind one interface (:mod:`.base`), chosen by URL.

``sqlite:///path/to/file.db`` is the embedded single-node backend;
``postgresql://...`` is shared by several nodes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Delivery, EventQuery, Store, StoredEvent, Token, TokenGrant, Tx

__all__ = [
    "Delivery", "EventQuery", "Store", "StoredEvent", "Token", "TokenGrant", "Tx", "store_for_url",
]  # fmt: skip


def store_for_url(url: str, node_id: str) -> Store:
    """The backend for a database URL; drivers are imported only when used."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = url.removeprefix("sqlite://")
        return SQLiteStore(path[1:] if path.startswith("/") else path, node_id)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url, node_id)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///file.db or postgresql://...")

"""Bearer tokens: random, shown once, stored only as their hash."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    return "prs_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored and looked up only by this hash."""
    return hashlib.sha256(token.encode()).hexdigest()

"""Secrets: bearer tokens, random, shown once, stored only as their hash; and
webhook signing secrets, shown once, kept to sign with."""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_token() -> str:
    return "prs_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored and looked up only by this hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

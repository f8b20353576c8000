"""Federated login: ID tokens of a domain's identity provider, verified.

A domain's :class:`~presence.core.model.Identity` names its issuer. The
issuer's keys come from its discovery document
(``{issuer}/.well-known/openid-configuration``, whose ``issuer`` must be the
same) and the ``jwks_uri`` it names, and are kept per issuer and key id
together: a key of one issuer never verifies another's token, whatever key
id they share. A token naming a key id the issuer's keys lack has them
fetched again, at most once a :data:`REFETCH_AFTER` per issuer, by one
request at a time; a fetch that fails or hangs (:data:`FETCH_TIMEOUT`)
keeps the last good keys, and logins whose keys are known never wait for it.

PyJWT checks the signature and the claims: the algorithm (one of
:data:`ALGORITHMS`, the one the key is for; never ``none`` or an HMAC),
``iss``, ``aud``, ``exp`` and ``nbf`` with :data:`LEEWAY`. Every refusal is
:exc:`SignInRefused` with a message naming the check that failed, never the
token or a key; keys that could not be fetched are :exc:`KeysUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from . import outbound
from .core.model import Identity

logger = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
LEEWAY = 60  # seconds, for exp and nbf
#: Seconds before an issuer's keys are fetched again for an unknown key id
#: (``PRESENCE_OIDC_REFETCH_INTERVAL``, for tests).
REFETCH_AFTER = 60.0
#: What an e-mail claim must look like, as the admin API takes addresses.
EMAIL = re.compile(r"[^@\s\x00]+@[^@\s\x00]+")
MAX_EMAIL = 254
#: Seconds a fetch of an issuer's discovery document and keys may take, all told.
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20  # bytes of a discovery document or key set


def issuer_policy(allow_http: bool) -> outbound.Policy:
    """Issuers are public HTTPS hosts, unless ``PRESENCE_OIDC_ALLOW_HTTP`` allows
    ``http://`` and private addresses (on premises, tests): a domain admin's
    issuer must not make the server read addresses inside its own network."""
    return outbound.Policy(allow_http=allow_http, allow_private=allow_http)


class SignInRefused(Exception):
    """A sign-in that fails a check; the message says which, for a person."""


class KeysUnavailable(Exception):
    """The identity provider's keys, needed for a token, could not be fetched:
    not the token's fault, so the device may try again later."""


@dataclass
class _Keys:
    """One issuer's keys by id, and when they were last asked for."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked_at: float | None = None
    fetching: asyncio.Task[None] | None = None
    failure: str | None = None  # why the last fetch failed


class Verifier:
    """Verifies ID tokens against their domain's issuer; keeps every issuer's keys."""

    def __init__(
        self,
        allow_http: bool,
        clock: Callable[[], float] = time.monotonic,
        refetch_after: float = REFETCH_AFTER,
    ) -> None:
        self.policy = issuer_policy(allow_http)
        self.clock = clock
        self.refetch_after = refetch_after
        self._issuers: dict[str, _Keys] = {}

    async def fetch_keys(self, identity: Identity, token: str) -> None:
        """Fetch the issuer's keys if the token names a key they lack and they
        may be fetched now; before the token is judged, so that a login
        waiting for its identity provider holds no turn of its address."""
        with contextlib.suppress(jwt.InvalidTokenError):
            kid = jwt.get_unverified_header(token).get("kid")
            if isinstance(kid, str) and kid:
                await self._fetched(identity.issuer, kid)

    async def verify(self, identity: Identity, token: str) -> dict[str, Any]:
        """The token's claims, once every check passed; :exc:`SignInRefused` if not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise SignInRefused("The ID token is not a JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise SignInRefused(
                f"The ID token's algorithm {str(algorithm)[:20]} is not accepted "
                f"(only {', '.join(ALGORITHMS)})."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SignInRefused("The ID token names no key (kid).")
        key = await self._key(identity.issuer, kid)
        try:
            if key.get("alg", algorithm) != algorithm or key.get("use", "sig") != "sig":
                raise jwt.InvalidKeyError
            signing_key = jwt.PyJWK(key, algorithm)
        except jwt.PyJWTError:
            raise SignInRefused(
                f"The identity provider's key {kid[:64]!r} is not one for {algorithm} signatures."
            ) from None
        claims = _decode(token, signing_key, algorithm, identity)
        email = claims.get(identity.email_claim)
        if not isinstance(email, str) or not email:
            raise SignInRefused(f"The ID token has no {identity.email_claim!r} claim.")
        if len(email) > MAX_EMAIL or not EMAIL.fullmatch(email):
            raise SignInRefused(
                f"The ID token's {identity.email_claim!r} claim is not an e-mail address."
            )
        if claims.get("email_verified") in (False, "false"):  # some providers send text
            raise SignInRefused("The ID token's e-mail address is not verified.")
        return claims

    async def _fetched(self, issuer: str, kid: str) -> _Keys:
        """The issuer's keys, fetched again first if they lack ``kid`` and were
        not asked for within :attr:`refetch_after` (or a fetch is under way)."""
        keys = self._issuers.setdefault(issuer, _Keys())
        if kid not in keys.keys:
            now = self.clock()
            if keys.fetching is None and (
                keys.asked_at is None or now - keys.asked_at >= self.refetch_after
            ):
                keys.asked_at = now
                keys.fetching = asyncio.create_task(self._fetch(issuer, keys))
            if keys.fetching is not None:
                await asyncio.shield(keys.fetching)  # others may wait for the same fetch
        return keys

    async def _key(self, issuer: str, kid: str) -> dict[str, Any]:
        keys = await self._fetched(issuer, kid)
        if kid in keys.keys:
            return keys.keys[kid]
        if keys.failure is not None:  # details in the log, not to an unknown device
            raise KeysUnavailable("The identity provider's keys could not be fetched.")
        raise SignInRefused(
            f"The ID token's key {kid[:64]!r} is not among the identity provider's keys."
        )

    async def _fetch(self, issuer: str, keys: _Keys) -> None:
        """Fetch the issuer's keys; on failure keep the last good ones and say why."""
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                url = issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = await self._document(url)
                if document.get("issuer") != issuer:
                    raise SignInRefused("its discovery document names another issuer.")
                jwks_uri = document.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise SignInRefused("its discovery document names no jwks_uri.")
                found = (await self._document(jwks_uri)).get("keys")
            if not isinstance(found, list):
                raise SignInRefused("its key set has no keys.")
            keys.keys = {
                k["kid"]: k for k in found if isinstance(k, dict) and isinstance(k.get("kid"), str)
            }
            keys.failure = None
        except TimeoutError:
            keys.failure = f"no answer within {FETCH_TIMEOUT:g} s."
        except SignInRefused as exc:
            keys.failure = str(exc)
        finally:
            keys.fetching = None
        if keys.failure is not None:
            logger.warning("identity provider %s: keys not fetched: %s", issuer, keys.failure)

    async def _document(self, url: str) -> dict[str, Any]:
        answer = await outbound.request(
            "GET", url, self.policy, timeout=FETCH_TIMEOUT, max_body=MAX_DOCUMENT,
            headers={"accept": "application/json"},
        )  # fmt: skip
        if not answer.ok:
            raise SignInRefused(f"{url[:200]}: {answer.error}")
        try:
            document = json.loads(answer.body)
        except ValueError:
            raise SignInRefused(f"{url[:200]} is not JSON.") from None
        if not isinstance(document, dict):
            raise SignInRefused(f"{url[:200]} is not a JSON object.")
        return document


# PyJWT's refusals, in words naming the check.
_REFUSALS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "The ID token has expired."),
    (jwt.ImmatureSignatureError, "The ID token is not valid yet (nbf)."),
    (jwt.InvalidIssuerError, "The ID token's issuer is not the domain's identity provider."),
    (jwt.InvalidAudienceError, "The ID token is not for this audience."),
    (jwt.InvalidSignatureError, "The ID token's signature does not verify."),
]


def _decode(token: str, key: jwt.PyJWK, algorithm: str, identity: Identity) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[algorithm], audience=identity.audience,
            issuer=identity.issuer, leeway=LEEWAY,
            options={"require": ["exp", "iss", "aud"]},
        )  # fmt: skip
        return claims
    except jwt.MissingRequiredClaimError as exc:
        raise SignInRefused(f"The ID token is missing its {exc.claim!r} claim.") from None
    except jwt.InvalidTokenError as exc:
        for kind, message in _REFUSALS:
            if isinstance(exc, kind):
                raise SignInRefused(message) from None
        raise SignInRefused("The ID token could not be verified.") from None

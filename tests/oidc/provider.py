"""The test side of federated login: keys, ID tokens, the IdP process, sign-ins.

`SigningKey` is a key pair the tests generate (RSA for RS256 and PS256, EC
P-256 for ES256, Ed25519 for EdDSA) with its public JWK. `Claims` and
`mint` make ID tokens with PyJWT, any claim or header changed; `unsigned`
and `hmac_signed` forge by hand the two tokens PyJWT refuses to make (`alg:
none`, and HS256 keyed with the RSA public key's PEM). `IdentityProvider`
runs `idp.py` as a process of the test's own, hands it keys and reads what
it was asked. `configure` sets a domain's identity provider through the API;
`sign_in` opens a device session with `hello {domain, id_token, device}` and
says what came of it (`SignIn`), including the close code and how long the
answer took.

Waiting is for a condition with a deadline; nothing here sleeps a fixed time
to let the server catch up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import controlled
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from server.client import REFUSALS, Device, Domain, Harness, Message, check_error, ok
from servers import free_port

T = TypeVar("T")

IDP = Path(__file__).resolve().parent / "idp.py"
#: Seconds for the IdP to answer its control port after its start.
IDP_STARTUP = 10.0
#: Seconds between looks while waiting for a condition.
POLL = 0.05
#: Generous bound for an answer the server gives at once (a loaded 2-core machine).
WAIT = 10.0
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks"
#: The algorithms the contract accepts.
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(document: Message) -> str:
    return _b64(json.dumps(document, separators=(",", ":")).encode())


@dataclass(frozen=True)
class SigningKey:
    """A key pair of an identity provider, for one algorithm, with its key id."""

    alg: str
    kid: str
    private: PrivateKey

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> SigningKey:
        """A new key for `alg` (one of `ALGORITHMS`), with `kid` or a random one."""
        private: PrivateKey
        if alg in ("RS256", "PS256"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"no key type for {alg}")
        return cls(alg, kid or f"k-{uuid.uuid4().hex[:12]}", private)

    def public_jwk(self) -> Message:
        """The public key as the IdP publishes it: with `kid`, `alg` and `use`."""
        algorithm = get_default_algorithms()[self.alg]
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        assert isinstance(jwk, dict) and "d" not in jwk, "a public JWK holds no private part"
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def with_kid(self, kid: str) -> SigningKey:
        """The same key pair under another key id."""
        return SigningKey(self.alg, kid, self.private)


def jwks(keys: Iterable[SigningKey]) -> Message:
    """A JWKS document of `keys`' public halves."""
    return {"keys": [key.public_jwk() for key in keys]}


#: Give a claim this value to leave it out of the token.
DROP = object()


@dataclass(frozen=True)
class Audience:
    """What a domain's tokens must say: the issuer and the audience."""

    issuer: str
    audience: str


def claims(for_: Audience, email: str, /, **changes: Any) -> Message:
    """The claims of a valid ID token for `email`, valid from a minute ago for
    five minutes; `changes` replace claims (`DROP` leaves one out)."""
    now = int(time.time())
    document: Message = {
        "iss": for_.issuer,
        "aud": for_.audience,
        "sub": uuid.uuid4().hex,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 300,
        "email": email,
        "email_verified": True,
    }
    for name, value in changes.items():
        if value is DROP:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def mint(key: SigningKey, payload: Message, **headers: Any) -> str:
    """`payload` signed with `key` by PyJWT, with `kid` unless `headers` change it
    (`kid=DROP` leaves it out)."""
    header: Message = {"kid": key.kid, "typ": "JWT"}
    for name, value in headers.items():
        if value is DROP:
            header.pop(name, None)
        else:
            header[name] = value
    return jwt.encode(payload, key.private, algorithm=key.alg, headers=header)


def unsigned(payload: Message, kid: str) -> str:
    """An `alg: none` token, written by hand: the signature part is empty."""
    return f"{_b64_json({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64_json(payload)}."


def hmac_signed(payload: Message, key: SigningKey) -> str:
    """An HS256 token whose HMAC secret is `key`'s public PEM, written by hand
    (PyJWT refuses that key): the old algorithm-confusion forgery."""
    signing_input = f"{_b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': key.kid})}."
    signing_input += _b64_json(payload)
    mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def with_claims_changed(token: str, **changes: Any) -> str:
    """`token` with its payload changed after signing: the signature no longer fits."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded.update(changes)
    return f"{header}.{_b64_json(decoded)}.{signature}"


@dataclass(eq=False)
class IdentityProvider:
    """`idp.py` as a process: started with keys, its mode set, keys rotated, its counts read."""

    workdir: Path
    _: KW_ONLY
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}/control"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def audience(self, audience: str | None = None) -> Audience:
        """What tokens of this issuer for `audience` (a fresh one by default) say."""
        return Audience(self.issuer, audience or f"client-{uuid.uuid4().hex[:8]}")

    def start(self, keys: Iterable[SigningKey] = (), mode: str = "ok") -> None:
        """Start the process serving `keys` in `mode`, and wait until it answers."""
        assert not self.running, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        initial = self.workdir / "jwks.json"
        initial.write_text(json.dumps(jwks(keys)), encoding="utf-8")
        command = [
            sys.executable, str(IDP), "--port", str(self.port),
            "--control-port", str(self.control_port), "--jwks", str(initial), "--mode", mode,
        ]  # fmt: skip
        self.process = controlled.start(
            command, self.workdir / "idp.err", self.control, IDP_STARTUP
        )

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            controlled.stop(self.process)

    async def _control(self, body: Message | None = None) -> Message:
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
            if body is None:
                answer = await http.get(self.control)
            else:
                answer = await http.post(self.control, json=body)
        assert answer.status_code == 200, answer.text
        state = answer.json()
        assert isinstance(state, dict), state
        return state

    async def set_mode(self, mode: str) -> None:
        """`ok`, `down` (503) or `hang` (no answer)."""
        assert (await self._control({"mode": mode}))["mode"] == mode

    async def serve(self, keys: Iterable[SigningKey]) -> None:
        """Replace the published key set (a rotation)."""
        await self.publish(jwks(keys))

    async def publish(self, document: Message) -> None:
        """Publish `document` as the key set, whatever it holds."""
        await self._control({"jwks": document})

    async def name_issuer(self, issuer: str) -> None:
        """Make the discovery document name `issuer` instead of this IdP's own."""
        await self._control({"discovery_issuer": issuer})

    async def requests(self) -> list[Message]:
        """Every request received so far, oldest first: `{path, at, mode}`."""
        requests = (await self._control())["requests"]
        assert isinstance(requests, list), requests
        return requests

    async def counts(self) -> dict[str, int]:
        """Requests received so far, by path, whatever they were answered."""
        counts = (await self._control())["counts"]
        assert isinstance(counts, dict), counts
        return {str(path): int(n) for path, n in counts.items()}

    async def fetches(self) -> tuple[int, int]:
        """How often the discovery document and the key set were asked for."""
        counts = await self.counts()
        return counts.get(DISCOVERY, 0), counts.get(JWKS, 0)


async def wait_until(
    condition: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT
) -> T:
    """Poll `condition` until it returns something true; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await condition()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(POLL)


def identity_path(domain: Domain) -> str:
    return domain.path("identity")


async def configure(
    domain: Domain,
    for_: Audience,
    *,
    email_claim: str | None = None,
    provision: Message | None = None,
) -> Message:
    """PUT the domain's identity provider; the answer, checked against what was sent."""
    body: Message = {"issuer": for_.issuer, "audience": for_.audience}
    if email_claim is not None:
        body["email_claim"] = email_claim
    if provision is not None:
        body["provision"] = provision
    answer = ok(await domain.api.put(identity_path(domain), body))
    expected = {**body, "email_claim": email_claim or "email", "provision": provision}
    assert answer == expected, f"PUT identity answered {answer}, expected {expected}"
    return expected


@dataclass
class SignIn:
    """What came of one `hello {domain, id_token}`: the answer, the close code
    (`None`: still open), and the seconds until the answer."""

    device: Device
    answer: Message
    close_code: int | None
    seconds: float
    token: str

    @property
    def welcomed(self) -> bool:
        return bool(self.answer["type"] == "welcome")

    @property
    def code(self) -> str | None:
        return None if self.welcomed else self.answer.get("code")

    @property
    def message(self) -> str:
        return str(self.answer.get("message", ""))

    def summary(self) -> str:
        """One line for a table: `welcome`, or `code close: message`."""
        if self.welcomed:
            return f"welcome ({self.answer['license']['model']})"
        return f"{self.code} {self.close_code}: {self.message}"

    def assert_welcomed(self) -> Message:
        assert self.welcomed, f"refused: {self.answer}"
        return self.answer

    def assert_refused(self, code: str, close: int | None, *words: str) -> None:
        """Refused with `code`, closed with `close` (`None`: left open), the
        message holding each of `words` (case-insensitive) and nothing of the token."""
        assert self.code == code, f"expected {code}, got {self.answer}"
        check_error(self.answer)
        assert self.close_code == close, f"closed with {self.close_code}, expected {close}"
        for word in words:
            assert word.lower() in self.message.lower(), f"no {word!r} in {self.message!r}"
        assert not leaks(self.message, self.token), f"the message shows the token: {self.message}"


def leaks(message: str, token: str) -> bool:
    """Whether `message` shows `token` or any part of it longer than a few characters."""
    parts = [token, *token.split(".")]
    return any(len(part) >= 8 and part in message for part in parts)


def hello(domain_id: str, id_token: str, device: Device, **more: Any) -> Message:
    """The federated `hello` of `device`."""
    described: Message = {"id": device.id, "kind": device.kind}
    return {"type": "hello", "domain": domain_id, "id_token": id_token, "device": described, **more}


async def sign_in(
    harness: Harness,
    domain_id: str,
    id_token: str,
    *,
    timeout: float = WAIT,
    device_id: str | None = None,
    **more: Any,
) -> SignIn:
    """Open a device and say hello with `id_token`; wait for the welcome or the
    error, and after an error that ends the session, for the close."""
    device = await harness.device(device_id=device_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await device.send(hello(domain_id, id_token, device, **more))
    answer = await device.outcome(timeout)
    seconds = loop.time() - started
    if answer["type"] == "error" and answer.get("code") not in REFUSALS:
        try:
            await device.expect("(the close)", timeout)
        except AssertionError:
            pass  # the close, or nothing: `close_code` says which
    return SignIn(device, answer, device.close_code, seconds, id_token)

"""An OpenID Connect identity provider run as a process of its own: the real IdP of the tests.

    python tests/oidc/idp.py --port P --control-port C [--jwks FILE] [--mode MODE]

It listens on 127.0.0.1 at `--port` and is the issuer `http://127.0.0.1:P`.
It serves what a relying party reads of an identity provider, and nothing else:

- `GET /.well-known/openid-configuration`: the discovery document, whose
  `issuer` is its base URL and whose `jwks_uri` is `<base>/jwks`;
- `GET /jwks`: the public keys it holds now, `{"keys": [...]}`, as the tests
  handed them (at the start from `--jwks`, later through the control port).

It signs nothing: the tests hold the private keys and mint the tokens. How it
answers depends on its mode:

- `ok`: the documents, 200 (any other path 404);
- `down`: 503 to every request;
- `hang`: no answer at all, the connection held open until the client closes it.

Every request to `--port` is counted by path, whatever the mode. The control
endpoint on its own port (so that control traffic is never counted) reads and
changes the state: `GET /control` answers `{"mode", "issuer", "counts":
{path: n}, "requests": [{"path", "at", "mode"}]}`; `POST /control` with any of
`{"mode", "jwks", "discovery_issuer"}` sets the mode, replaces the key set (a
rotation), or makes the discovery document name another issuer, and answers
the state. It uses the standard library only: it runs with any interpreter,
outside the test process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, when run as a script
from httpserver import BadRequest, read_request  # noqa: E402

MODES = ("ok", "down", "hang")
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


@dataclass
class Provider:
    """The provider's state: its mode, its keys, what it was asked."""

    port: int
    mode: str = "ok"
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    discovery_issuer: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "issuer": self.issuer,
            "counts": self.counts,
            "requests": self.requests,
        }

    def discovery(self) -> dict[str, Any]:
        issuer = self.issuer
        return {
            "issuer": self.discovery_issuer or issuer,
            "jwks_uri": issuer + JWKS,
            "authorization_endpoint": issuer + "/authorize",
            "token_endpoint": issuer + "/token",
            "response_types_supported": ["code", "id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        }

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await read_request(reader, writer)) is not None:
                path = request.path.split("?", 1)[0]
                mode = self.mode
                self.counts[path] = self.counts.get(path, 0) + 1
                self.requests.append({"path": path, "at": time.time(), "mode": mode})
                if mode == "hang":
                    while await reader.read(65536):
                        pass
                    return
                if mode == "down":
                    await respond(writer, 503, {"error": "temporarily unavailable"})
                elif request.method == "GET" and path == DISCOVERY:
                    await respond(writer, 200, self.discovery())
                elif request.method == "GET" and path == JWKS:
                    await respond(writer, 200, self.jwks)
                else:
                    await respond(writer, 404, {"error": "not found"})
                if request.headers.get("connection", "").lower() == "close":
                    return
        except (BadRequest, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader, writer)
            if request is None:
                return
            if request.method == "POST":
                wanted = json.loads(request.body)
                if "mode" in wanted and wanted["mode"] not in MODES:
                    await respond(writer, 400, {"error": f"unknown mode {wanted['mode']!r}"})
                    return
                self.mode = wanted.get("mode", self.mode)
                self.jwks = wanted.get("jwks", self.jwks)
                if "discovery_issuer" in wanted:
                    self.discovery_issuer = wanted["discovery_issuer"]
            await respond(writer, 200, self.state(), {"Connection": "close"})
        except (BadRequest, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    document: Any,
    extra: dict[str, str] | None = None,
) -> None:
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    headers.update(extra or {})
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + body)
    await writer.drain()


async def main(port: int, control_port: int, jwks: Path | None, mode: str) -> None:
    provider = Provider(port, mode=mode)
    if jwks is not None:
        provider.jwks = json.loads(jwks.read_text(encoding="utf-8"))
    served = await asyncio.start_server(provider.serve, "127.0.0.1", port)
    controlled = await asyncio.start_server(provider.control, "127.0.0.1", control_port)
    async with served, controlled:
        await asyncio.gather(served.serve_forever(), controlled.serve_forever())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--jwks", type=Path, default=None)
    parser.add_argument("--mode", choices=MODES, default="ok")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.port, arguments.control_port, arguments.jwks, arguments.mode))

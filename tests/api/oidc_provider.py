"""A small OpenID Connect provider for the tests, on 127.0.0.1: discovery, JWKS, an
authorization endpoint that approves one configured person at once, and a token endpoint
that checks the client's secret, the redirect URI and the PKCE S256 verifier.

Signing keys are made with ``cryptography`` (RSA 2048 for RS256, P-256 for ES256) and
tokens signed with PyJWT. What it publishes (``published``) and what it signs with
(``signer``) are set apart, so a test can rotate keys or sign with one nobody published;
``override`` changes claims of the next ID tokens (a wrong nonce, issuer, audience, ...).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

CLIENT_ID = "voxd-test-client"
CLIENT_SECRET = "provider-client-secret-for-tests"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        pub = self.private.public_key()
        out = (RSAAlgorithm if self.alg == "RS256" else ECAlgorithm).to_jwk(pub, as_dict=True)
        return {**out, "kid": self.kid, "use": "sig", "alg": self.alg}


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class LocalProvider:
    client_id: str = CLIENT_ID
    client_secret: str | None = CLIENT_SECRET
    person: dict[str, Any] = field(default_factory=lambda: {"sub": "idp-user-1", "email": "sso.person@example.com",
                                                            "email_verified": True})
    override: dict[str, Any] = field(default_factory=dict)
    deny: bool = False  # the person declines: the redirect carries error=access_denied
    published: list[SigningKey] = field(default_factory=list)
    signer: SigningKey | None = None
    sign_hs256: bool = False  # sign with HS256 and the client secret instead (refused by voxd)
    jwks_hits: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    issuer: str = ""

    async def start(self) -> str:
        if not self.published:
            self.published = [rsa_key("key-1")]
        self.signer = self.signer or self.published[0]
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.issuer = f"http://127.0.0.1:{port}"
        return self.issuer

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def rotate(self, new: SigningKey) -> None:
        """The provider switches to ``new`` and stops publishing the old key."""
        self.published = [new]
        self.signer = new

    # -- endpoints
    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        return web.json_response({"keys": [k.jwk() for k in self.published]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="unknown client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge") or "openid" not in q.get("scope", ""):
            return web.Response(status=400, text="PKCE S256 and scope openid are required")
        redirect = q["redirect_uri"]
        if self.deny:
            params = {"error": "access_denied", "error_description": "the person declined", "state": q["state"]}
        else:
            code = secrets.token_urlsafe(16)
            self._codes[code] = {"challenge": q["code_challenge"], "nonce": q.get("nonce"), "redirect_uri": redirect}
            params = {"code": code, "state": q["state"]}
        raise web.HTTPFound(redirect + "?" + urlencode(params))

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})

        def bad(error: str) -> web.Response:
            return web.json_response({"error": error}, status=400)

        if self.client_secret is not None:
            expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._codes.pop(str(form.get("code", "")), None)  # single use
        if form.get("grant_type") != "authorization_code" or grant is None:
            return bad("invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return bad("invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if not verifier or challenge != grant["challenge"]:
            return bad("invalid_grant")  # PKCE: the verifier does not belong to the challenge
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], **self.person, **self.override}
        assert self.signer is not None
        if self.sign_hs256:
            token = jwt.encode(claims, (self.client_secret or "x") * 2, algorithm="HS256",
                               headers={"kid": self.signer.kid})
        else:
            token = jwt.encode(claims, self.signer.private, algorithm=self.signer.alg, headers={"kid": self.signer.kid})
        return web.json_response({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                  "expires_in": 300, "id_token": token})

"""An identity provider for the tests, made here: a key pair generated with cryptography, its JWKS file, and
tokens signed with it (offline: nothing is fetched)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.hospital.example/realms/radiology"
AUDIENCE = "cxrtriage"
KID = "test-key-1"


@dataclass
class Provider:
    private_key: Any
    jwks_path: Path

    def token(self, *, roles: Any = ("reader",), lifetime_s: float = 300, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-123",
            "preferred_username": "dr.night",
            "iat": now,
            "exp": now + int(lifetime_s),
        }
        if roles is not None:
            payload["roles"] = list(roles) if isinstance(roles, tuple) else roles
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.private_key, algorithm="RS256", headers={"kid": KID})


def make_provider(folder: Path) -> Provider:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update(kid=KID, alg="RS256", use="sig")
    path = folder / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return Provider(private_key, path)

"""OIDC / JWT bearer tokens (cxrtriage.security.tokens) against a provider made in the test: valid tokens give the
user and the highest role named; expired, wrong-audience, wrong-issuer, wrongly signed, ``alg: none`` and
HMAC-with-the-public-key tokens are refused with a short reason; a token without a role is refused as such."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cxrtriage.config import Settings
from cxrtriage.errors import ConfigurationError
from cxrtriage.security.authenticate import Authenticator, CredentialRejected, CredentialWithoutRole, FailureLimiter
from cxrtriage.security.principal import Principal, Role
from cxrtriage.security.tokens import NoRole, TokenRejected, TokenValidator

sys.path.insert(0, str(Path(__file__).parent))
from jwt_fixtures import AUDIENCE, ISSUER, KID, Provider, make_provider  # noqa: E402


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Provider:
    return make_provider(tmp_path_factory.mktemp("idp"))


@pytest.fixture
def validator(provider: Provider) -> TokenValidator:
    return TokenValidator(ISSUER, AUDIENCE, str(provider.jwks_path))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(payload: dict) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{_b64(payload)}."


def test_a_valid_token_gives_the_user_and_the_highest_role(provider: Provider, validator: TokenValidator) -> None:
    assert validator.verify(provider.token(roles=("reader",))) == Principal("dr.night", Role.READER, "oidc")
    assert validator.verify(provider.token(roles=("reader", "admin", "other"))).role is Role.ADMIN
    assert validator.verify(provider.token(roles="submitter")).role is Role.SUBMITTER  # a string claim
    nested = TokenValidator(ISSUER, AUDIENCE, str(provider.jwks_path), role_claim="realm_access.roles")
    token = provider.token(roles=None, realm_access={"roles": ["Reader"]})
    assert nested.verify(token).role is Role.READER


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.token(lifetime_s=-3600), "expired token"),
        (lambda p: p.token(aud="another-app"), "token for another audience"),
        (lambda p: p.token(iss="https://evil.example"), "token from another issuer"),
        (
            lambda p: p.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "token signature does not verify",
        ),
        (lambda p: p.token(exp=None), "token without the 'exp' claim"),
        (lambda p: "not.a.token", "malformed token"),
        (lambda p: "garbage", "malformed token"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "bad-signature", "no-exp", "malformed", "garbage"],
)
def test_bad_tokens_are_refused_with_a_short_reason(
    provider: Provider, validator: TokenValidator, make, reason
) -> None:
    token = make(provider)
    with pytest.raises(TokenRejected) as refused:
        validator.verify(token)
    assert str(refused.value) == reason
    assert token not in str(refused.value)


def test_alg_none_and_hmac_with_the_public_key_are_refused(provider: Provider, validator: TokenValidator) -> None:
    now_claims = jwt.decode(provider.token(), options={"verify_signature": False})
    with pytest.raises(TokenRejected, match="algorithm not allowed"):
        validator.verify(_unsigned(now_claims))
    public_pem = provider.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # the classic confusion: an HS256 token "signed" with the provider's public key as the shared secret
    # (PyJWT itself refuses to sign it, so the forgery is written by hand)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{_b64(now_claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(TokenRejected, match="algorithm not allowed"):
        validator.verify(forged)


def test_a_token_without_a_cxrtriage_role_is_refused_as_such(provider: Provider, validator: TokenValidator) -> None:
    for roles in (None, ["nurse", "viewer"], [], 42):
        with pytest.raises(NoRole, match="names no cxrtriage role in claim 'roles'"):
            validator.verify(provider.token(roles=roles))


def test_the_authenticator_tells_keys_from_tokens(tmp_path: Path, provider: Provider) -> None:
    settings = Settings(
        worklist_path=tmp_path / "w.sqlite",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks=str(provider.jwks_path),
    )
    auth = Authenticator(settings)
    assert auth.enforced() and auth.configured()
    _, key = auth.keys.create("script", Role.SUBMITTER)
    assert auth.authenticate(key).via == "api-key"
    assert auth.authenticate(provider.token(roles=["admin"])) == Principal("dr.night", Role.ADMIN, "oidc")
    with pytest.raises(CredentialWithoutRole):
        auth.authenticate(provider.token(roles=["nurse"]))
    with pytest.raises(CredentialRejected, match="unknown or revoked API key"):
        auth.authenticate("cxt_00000000_nope")


def test_half_configured_single_sign_on_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CXRTRIAGE_OIDC_JWKS missing"):
        Authenticator(Settings(worklist_path=tmp_path / "w.sqlite", oidc_issuer=ISSUER, oidc_audience=AUDIENCE))
    with pytest.raises(ConfigurationError, match="neither an http"):
        Authenticator(
            Settings(
                worklist_path=tmp_path / "w.sqlite",
                oidc_issuer=ISSUER,
                oidc_audience=AUDIENCE,
                oidc_jwks=str(tmp_path / "missing.json"),
            )
        )


def test_the_failure_limiter_counts_per_address_in_a_sliding_minute() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.record("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None  # another address is not affected
    now[0] += 30
    assert limiter.retry_after("10.0.0.1") == 30
    now[0] += 31
    assert limiter.retry_after("10.0.0.1") is None
    small = FailureLimiter(1, max_clients=2, clock=lambda: now[0])
    for address in ("a", "b", "c"):
        small.record(address)
    assert small.retry_after("a") is None and small.retry_after("c") == 60  # bounded memory: the oldest forgotten

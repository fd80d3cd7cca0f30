"""engine.auth.jwt: HS256, RS256 (PEM), JWKS by kid; time from the ``now`` argument."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from engine.auth import (
    ANONYMOUS,
    AuthConfigError,
    AuthFailure,
    Credentials,
    Identity,
    JwtAuthenticator,
    build_authenticator,
)

NOW = 1_700_000_000.0
SECRET = "s" * 32
INVALID = AuthFailure("invalid token")


def _creds(token: str) -> Credentials:
    return Credentials(auth_payload={"token": token})


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "alice",
        "roles": ["admin", "chat"],
        "aud": "chat",
        "iss": "https://issuer.example",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def hs256() -> JwtAuthenticator:
    return JwtAuthenticator.from_profile(
        {
            "algorithms": ["HS256"],
            "secret": SECRET,
            "audience": "chat",
            "issuer": "https://issuer.example",
            "leeway_seconds": 5,
        }
    )


def _hs(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return pyjwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def test_valid_hs256(hs256: JwtAuthenticator) -> None:
    who = hs256.authenticate(_creds(_hs(_claims())), NOW)
    assert who == Identity(user_id="alice", roles=frozenset({"admin", "chat"}), via="jwt")
    assert isinstance(who, Identity)
    assert who.claims["aud"] == "chat"
    assert not who.cookie_authenticated


@pytest.mark.parametrize(
    ("claims", "now", "expected"),
    [
        (_claims(exp=int(NOW) - 100), NOW, AuthFailure("token expired")),
        (_claims(exp=int(NOW) - 5), NOW, AuthFailure("token expired")),  # exp <= now - leeway
        (_claims(exp=int(NOW) - 4), NOW, None),  # within leeway
        (_claims(), NOW + 400, AuthFailure("token expired")),
        (_claims(nbf=int(NOW) + 60), NOW, AuthFailure("token not yet valid")),
        (_claims(nbf=int(NOW) + 60), NOW + 60, None),
        (_claims(nbf=int(NOW) + 5), NOW, None),  # within leeway
        (_claims(iat=int(NOW) + 60), NOW, AuthFailure("token not yet valid")),
        (_claims(aud="other"), NOW, AuthFailure("wrong audience")),
        (_claims(aud=None), NOW, AuthFailure("wrong audience")),
        (_claims(iss="https://evil.example"), NOW, AuthFailure("wrong issuer")),
        (_claims(exp=None), NOW, INVALID),  # require = ["exp"] by default
        (_claims(exp="tomorrow"), NOW, INVALID),
        (_claims(exp=True), NOW, INVALID),
        (_claims(sub=None), NOW, INVALID),
        (_claims(sub=42), NOW, INVALID),  # PyJWT: sub must be a string
        (_claims(roles={"admin": True}), NOW, INVALID),
    ],
)
def test_claim_checks_use_now(
    hs256: JwtAuthenticator, claims: dict[str, Any], now: float, expected: AuthFailure | None
) -> None:
    result = hs256.authenticate(_creds(_hs(claims)), now)
    if expected is None:
        assert isinstance(result, Identity)
    else:
        assert result == expected


def test_bad_signature(hs256: JwtAuthenticator) -> None:
    assert hs256.authenticate(_creds(_hs(_claims(), secret="x" * 32)), NOW) == INVALID
    token = _hs(_claims())
    head, _body, sig = token.split(".")
    forged_body = (
        base64.urlsafe_b64encode(json.dumps(_claims(sub="mallory")).encode()).rstrip(b"=").decode()
    )
    assert hs256.authenticate(_creds(f"{head}.{forged_body}.{sig}"), NOW) == INVALID


def test_expired_and_forged_reports_invalid_not_expired(hs256: JwtAuthenticator) -> None:
    token = _hs(_claims(exp=int(NOW) - 1000), secret="x" * 32)
    assert hs256.authenticate(_creds(token), NOW) == INVALID


def _unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(hs256: JwtAuthenticator, alg: str) -> None:
    assert hs256.authenticate(_creds(_unsigned(_claims(), alg)), NOW) == INVALID


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "ey.ey.ey"])
def test_garbage_is_invalid_or_missing(hs256: JwtAuthenticator, garbage: str) -> None:
    result = hs256.authenticate(_creds(garbage), NOW)
    expected = AuthFailure("authentication required") if garbage == "" else INVALID
    assert result == expected


def test_hs384_token_refused_when_only_hs256_allowed(hs256: JwtAuthenticator) -> None:
    token = pyjwt.encode(_claims(), SECRET * 2, algorithm="HS384")
    assert hs256.authenticate(_creds(token), NOW) == INVALID


def test_custom_claims_and_space_separated_roles() -> None:
    authenticator = JwtAuthenticator.from_profile(
        {
            "secret": SECRET,
            "user_id_claim": "uid",
            "roles_claim": "scope",
            "require": [],
            "sources": ["header"],
        }
    )
    token = _hs({"uid": 7, "scope": "read write"})
    who = authenticator.authenticate(Credentials(headers={"authorization": f"Bearer {token}"}), NOW)
    assert who == Identity(user_id="7", roles=frozenset({"read", "write"}), via="jwt")
    # No audience configured: a token that names one is refused (PyJWT semantics).
    assert authenticator.authenticate(
        Credentials(headers={"authorization": f"Bearer {_hs({'uid': 1, 'aud': 'x'})}"}), NOW
    ) == AuthFailure("wrong audience")


def test_cookie_source_and_anonymous() -> None:
    authenticator = build_authenticator(
        {
            "type": "jwt",
            "sources": ["cookie"],
            "allow_anonymous": True,
            "jwt": {"secret": SECRET, "audience": "chat", "issuer": "https://issuer.example"},
        }
    )
    assert authenticator.authenticate(Credentials(), NOW) is ANONYMOUS
    who = authenticator.authenticate(Credentials(cookies={"access_token": _hs(_claims())}), NOW)
    assert isinstance(who, Identity)
    assert who.cookie_authenticated


# -- RS256 with a PEM public key ---------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def rs256(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> JwtAuthenticator:
    (tmp_path / "public.pem").write_text(_pem(rsa_key), encoding="utf-8")
    authenticator = build_authenticator(
        {"type": "jwt", "jwt": {"algorithms": ["RS256"], "public_key_file": "public.pem"}},
        base_dir=tmp_path,
    )
    assert isinstance(authenticator, JwtAuthenticator)
    return authenticator


def test_rs256_valid_and_wrong_key(
    rs256: JwtAuthenticator, rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    claims = _claims(aud=None, iss=None)
    good = pyjwt.encode(claims, rsa_key, algorithm="RS256")
    assert rs256.authenticate(_creds(good), NOW) == Identity(
        user_id="alice", roles=frozenset({"admin", "chat"}), via="jwt"
    )
    bad = pyjwt.encode(claims, rsa_key_2, algorithm="RS256")
    assert rs256.authenticate(_creds(bad), NOW) == INVALID
    assert rs256.authenticate(_creds(good), NOW + 301) == AuthFailure("token expired")


def test_rs256_refuses_hmac_key_confusion(
    rs256: JwtAuthenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An HS256 token 'signed' with the public PEM as secret must not verify."""
    pem = _pem(rsa_key)
    head = {"alg": "HS256", "typ": "JWT"}
    import hashlib
    import hmac

    def part(obj: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    signing_input = part(head) + b"." + part(_claims(aud=None, iss=None))
    sig = base64.urlsafe_b64encode(
        hmac.new(pem.encode(), signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    assert rs256.authenticate(_creds((signing_input + b"." + sig).decode()), NOW) == INVALID
    assert rs256.authenticate(_creds(_unsigned(_claims(aud=None, iss=None))), NOW) == INVALID


# -- JWKS with two keys selected by kid ---------------------------------------------------


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key_2: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> JwtAuthenticator:
    keys = []
    for kid, key in (("rsa-1", rsa_key), ("rsa-2", rsa_key_2)):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    keys.append({**ec_jwk, "kid": "ec-1"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}), encoding="utf-8")
    return JwtAuthenticator.from_profile(
        {"algorithms": ["RS256", "ES256"], "jwks_file": str(path), "audience": "chat"}
    )


def test_jwks_selects_key_by_kid(
    jwks: JwtAuthenticator,
    rsa_key: rsa.RSAPrivateKey,
    rsa_key_2: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    claims = _claims(iss=None)
    for kid, key in (("rsa-1", rsa_key), ("rsa-2", rsa_key_2)):
        token = pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        who = jwks.authenticate(_creds(token), NOW)
        assert isinstance(who, Identity), kid
    es = pyjwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert isinstance(jwks.authenticate(_creds(es), NOW), Identity)


@pytest.mark.parametrize(
    ("kid", "alg"),
    [
        ("rsa-1", "RS256"),  # signed by rsa-2, labelled rsa-1
        ("missing", "RS256"),
        (None, "RS256"),  # several keys: kid is needed
        ("ec-1", "RS256"),  # wrong key family for the alg
    ],
)
def test_jwks_wrong_or_missing_kid(
    jwks: JwtAuthenticator, rsa_key_2: rsa.RSAPrivateKey, kid: str | None, alg: str
) -> None:
    headers = {"kid": kid} if kid is not None else None
    token = pyjwt.encode(_claims(iss=None), rsa_key_2, algorithm=alg, headers=headers)
    assert jwks.authenticate(_creds(token), NOW) == INVALID


def test_jwks_pinned_alg_is_enforced(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k", "alg": "RS256"}]}), encoding="utf-8")
    authenticator = JwtAuthenticator.from_profile(
        {"algorithms": ["RS256", "RS512"], "jwks_file": str(path)}
    )
    claims = _claims(aud=None, iss=None)
    ok = pyjwt.encode(claims, rsa_key, algorithm="RS256")  # single key: no kid needed
    assert isinstance(authenticator.authenticate(_creds(ok), NOW), Identity)
    other = pyjwt.encode(claims, rsa_key, algorithm="RS512", headers={"kid": "k"})
    assert authenticator.authenticate(_creds(other), NOW) == INVALID


# -- configuration errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"algorithms": ["HS256"]}, r"auth\.jwt\.secret: required"),
        ({"secret": "short"}, "at least 32 bytes"),
        ({"algorithms": ["HS512"], "secret": "s" * 48}, "at least 64 bytes"),
        ({"algorithms": ["none"], "secret": SECRET}, "unsupported algorithm 'none'"),
        ({"algorithms": [], "secret": SECRET}, "at least one algorithm"),
        ({"algorithms": ["HS256", "RS256"], "secret": SECRET}, "cannot mix"),
        ({"algorithms": ["RS256"]}, "exactly one of public_key_file or jwks_file"),
        (
            {"algorithms": ["RS256"], "public_key_file": "a", "jwks_file": "b"},
            "exactly one of",
        ),
        (
            {"algorithms": ["RS256"], "public_key_file": "a", "secret": SECRET},
            "only used with HS",
        ),
        ({"secret": SECRET, "jwks_file": "x"}, "not HS"),
        ({"algorithms": ["RS256"], "public_key_file": "/nonexistent.pem"}, "cannot read"),
    ],
)
def test_config_errors_never_echo_secrets(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(AuthConfigError, match=message) as info:
        JwtAuthenticator.from_profile(mapping)
    assert SECRET not in str(info.value)


def test_secret_not_in_repr(hs256: JwtAuthenticator) -> None:
    assert SECRET not in repr(hs256.options)


def test_private_or_garbage_key_files_are_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    private = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "private.pem"
    path.write_bytes(private)
    with pytest.raises(AuthConfigError, match="holds a private key"):
        JwtAuthenticator.from_profile({"algorithms": ["RS256"], "public_key_file": str(path)})
    path.write_text("not a key", encoding="utf-8")
    with pytest.raises(AuthConfigError, match="not a PEM RS public key"):
        JwtAuthenticator.from_profile({"algorithms": ["RS256"], "public_key_file": str(path)})
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}', encoding="utf-8")
    with pytest.raises(AuthConfigError, match="at least one key"):
        JwtAuthenticator.from_profile({"algorithms": ["RS256"], "jwks_file": str(jwks)})
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key, as_dict=False))
    jwks.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    with pytest.raises(AuthConfigError, match="holds a private key"):
        JwtAuthenticator.from_profile({"algorithms": ["RS256"], "jwks_file": str(jwks)})
    public = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks.write_text(json.dumps({"keys": [public, public]}), encoding="utf-8")
    with pytest.raises(AuthConfigError, match="needs a kid"):
        JwtAuthenticator.from_profile({"algorithms": ["RS256"], "jwks_file": str(jwks)})

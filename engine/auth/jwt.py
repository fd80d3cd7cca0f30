"""``type = "jwt"``: JSON Web Tokens verified with PyJWT.

Keys are loaded once by ``from_profile``: an HMAC ``secret`` (HS*), a PEM ``public_key_file``
or a JWKS ``jwks_file`` selected by the token's ``kid`` (RS*/ES*). HMAC and public-key
algorithms cannot be mixed in one profile, and ``alg = "none"`` is never accepted.

PyJWT reads the wall clock, so time-based claims (``exp``, ``nbf``, ``iat``) are checked here
against the ``now`` argument, after PyJWT has verified the signature, audience, issuer and
required claims.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

import jwt
from jwt.algorithms import get_default_algorithms

from engine.auth import _options as opt
from engine.auth.base import (
    AUTHENTICATORS,
    AuthConfigError,
    AuthFailure,
    CommonOptions,
    Credentials,
    Identity,
    extract_credential,
    identity_from_claims,
)

__all__ = ["HMAC_ALGORITHMS", "PUBLIC_KEY_ALGORITHMS", "JwtAuthenticator", "JwtOptions"]

HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
)
_MIN_SECRET_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}

INVALID_TOKEN: Final = AuthFailure("invalid token")
EXPIRED: Final = AuthFailure("token expired")
NOT_YET_VALID: Final = AuthFailure("token not yet valid")
WRONG_AUDIENCE: Final = AuthFailure("wrong audience")
WRONG_ISSUER: Final = AuthFailure("wrong issuer")


class _Secret(str):
    """A string whose repr never shows the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True, slots=True)
class JwtOptions:
    """``[auth.jwt]`` options.

    :param algorithms: accepted ``alg`` header values (all HS* or all RS*/ES*).
    :param secret: the HMAC secret (HS*); never shown in reprs.
    :param public_key_file: PEM public key (RS*/ES*).
    :param jwks_file: JWKS JSON file; keys are selected by the token's ``kid``.
    :param audience: required ``aud`` value, if any.
    :param issuer: required ``iss`` value, if any.
    :param leeway_seconds: clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    :param user_id_claim: claim holding the user id.
    :param roles_claim: claim holding the roles (a list, or a space-separated string).
    :param require: claims that must be present.
    :param common: the ``[auth]`` common keys.
    """

    algorithms: tuple[str, ...] = ("HS256",)
    secret: str | None = field(default=None, repr=False)
    public_key_file: str | None = None
    jwks_file: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: float = 0.0
    user_id_claim: str = "sub"
    roles_claim: str = "roles"
    require: tuple[str, ...] = ("exp",)
    common: CommonOptions = field(default_factory=CommonOptions)

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> JwtOptions:
        """Read and cross-check the merged ``[auth]`` mapping (no file is read here).

        :raises AuthConfigError: unknown or mixed algorithms, missing or short key material.
        """
        algorithms = tuple(opt.str_list(mapping, "algorithms", "auth.jwt.algorithms", ["HS256"]))
        known = HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS
        for alg in algorithms:
            if alg not in known:
                raise AuthConfigError(
                    f"auth.jwt.algorithms: unsupported algorithm {alg!r}; expected one of: "
                    + ", ".join(known)
                )
        if not algorithms:
            raise AuthConfigError("auth.jwt.algorithms: must list at least one algorithm")
        hmac_algs = [a for a in algorithms if a in HMAC_ALGORITHMS]
        if hmac_algs and len(hmac_algs) != len(algorithms):
            raise AuthConfigError(
                "auth.jwt.algorithms: cannot mix HMAC (HS*) and public-key (RS*/ES*) algorithms"
            )
        secret = opt.optional_str(mapping, "secret", "auth.jwt.secret")
        public_key_file = opt.optional_str(mapping, "public_key_file", "auth.jwt.public_key_file")
        jwks_file = opt.optional_str(mapping, "jwks_file", "auth.jwt.jwks_file")
        if hmac_algs:
            if secret is None:
                raise AuthConfigError("auth.jwt.secret: required for HS* algorithms")
            needed = max(_MIN_SECRET_BYTES[a] for a in hmac_algs)
            if len(secret.encode("utf-8")) < needed:
                raise AuthConfigError(
                    f"auth.jwt.secret: must be at least {needed} bytes for " + ", ".join(hmac_algs)
                )
            if public_key_file is not None or jwks_file is not None:
                raise AuthConfigError(
                    "auth.jwt: public_key_file/jwks_file are for RS*/ES* algorithms, not HS*"
                )
        else:
            if (public_key_file is None) == (jwks_file is None):
                raise AuthConfigError(
                    "auth.jwt: set exactly one of public_key_file or jwks_file for RS*/ES*"
                )
            if secret is not None:
                raise AuthConfigError("auth.jwt.secret: only used with HS* algorithms")
        return cls(
            algorithms=algorithms,
            secret=_Secret(secret) if secret is not None else None,
            public_key_file=public_key_file,
            jwks_file=jwks_file,
            audience=opt.optional_str(mapping, "audience", "auth.jwt.audience"),
            issuer=opt.optional_str(mapping, "issuer", "auth.jwt.issuer"),
            leeway_seconds=opt.number(mapping, "leeway_seconds", "auth.jwt.leeway_seconds", 0),
            user_id_claim=opt.nonempty_str(
                mapping, "user_id_claim", "auth.jwt.user_id_claim", "sub"
            ),
            roles_claim=opt.nonempty_str(mapping, "roles_claim", "auth.jwt.roles_claim", "roles"),
            require=tuple(opt.str_list(mapping, "require", "auth.jwt.require", ["exp"])),
            common=CommonOptions.from_profile(mapping),
        )


@dataclass(frozen=True, slots=True)
class _VerificationKey:
    """A prepared key and the algorithm family it may verify."""

    key: Any
    family: str  # "HS", "RS" or "ES"
    alg: str | None  # the JWK's own "alg", if it pins one


def _family(alg: str) -> str:
    return alg[:2]


def _prepare_pem(pem: str, algorithms: tuple[str, ...]) -> _VerificationKey:
    families = {_family(a) for a in algorithms}
    if len(families) != 1:
        raise AuthConfigError(
            "auth.jwt.algorithms: a single public_key_file verifies either RS* or ES*, not both"
        )
    family = families.pop()
    try:
        key = get_default_algorithms()[algorithms[0]].prepare_key(pem)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AuthConfigError(
            f"auth.jwt.public_key_file: not a PEM {family} public key usable with "
            + ", ".join(algorithms)
        ) from None
    if hasattr(key, "private_bytes"):
        raise AuthConfigError(
            "auth.jwt.public_key_file: holds a private key; configure the public key"
        )
    return _VerificationKey(key=key, family=family, alg=None)


_KTY_FAMILY: Final = {"RSA": "RS", "EC": "ES"}


def _prepare_jwks(text: str) -> tuple[dict[str, _VerificationKey], _VerificationKey | None]:
    try:
        data = json.loads(text)
        keys = data["keys"]
        if not isinstance(keys, list) or not keys:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise AuthConfigError(
            'auth.jwt.jwks_file: expected a JWKS object {"keys": [...]} with at least one key'
        ) from None
    by_kid: dict[str, _VerificationKey] = {}
    for number, jwk in enumerate(keys, start=1):
        where = f"auth.jwt.jwks_file: key #{number}"
        if not isinstance(jwk, dict):
            raise AuthConfigError(f"{where}: expected an object")
        family = _KTY_FAMILY.get(str(jwk.get("kty")))
        if family is None:
            raise AuthConfigError(f"{where}: kty must be RSA or EC")
        if "d" in jwk:
            raise AuthConfigError(f"{where}: holds a private key; publish public keys only")
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthConfigError(f"{where}: not a usable {jwk.get('kty')} public key") from None
        alg = jwk.get("alg")
        pinned = alg if isinstance(alg, str) else None
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            if len(keys) > 1:
                raise AuthConfigError(f"{where}: needs a kid when the set has several keys")
            kid = ""
        if kid in by_kid:
            raise AuthConfigError(f"{where}: duplicate kid {kid!r}")
        by_kid[kid] = _VerificationKey(key=key, family=family, alg=pinned)
    only = next(iter(by_kid.values())) if len(by_kid) == 1 else None
    return by_kid, only


def _as_time(value: object) -> float | None:
    """Return a NumericDate claim as a finite float, or ``None`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


@AUTHENTICATORS.register("jwt")
class JwtAuthenticator:
    """Verifies JWTs; time-based claims are checked against ``now``."""

    EXAMPLE: ClassVar[str] = (
        "[auth]\n"
        'type = "jwt"\n'
        'sources = ["auth", "header"]\n'
        "\n"
        "[auth.jwt]\n"
        'algorithms = ["HS256"]\n'
        'secret = "${JWT_SECRET}"\n'
        'audience = "chat"\n'
        "leeway_seconds = 30\n"
    )

    def __init__(
        self,
        options: JwtOptions,
        *,
        keys: Mapping[str, _VerificationKey] | None = None,
        default_key: _VerificationKey | None = None,
    ) -> None:
        self.options = options
        self._keys: Mapping[str, _VerificationKey] = keys or {}
        self._default_key = default_key
        if options.secret is not None:
            self._default_key = _VerificationKey(
                key=options.secret.encode("utf-8"), family="HS", alg=None
            )

    @classmethod
    def from_profile(
        cls, mapping: Mapping[str, object], *, base_dir: Path | None = None
    ) -> JwtAuthenticator:
        """Build from the merged ``[auth]`` mapping; reads key files once."""
        options = JwtOptions.from_profile(mapping)
        if options.public_key_file is not None:
            pem = opt.read_text(options.public_key_file, "auth.jwt.public_key_file", base_dir)
            return cls(options, default_key=_prepare_pem(pem, options.algorithms))
        if options.jwks_file is not None:
            text = opt.read_text(options.jwks_file, "auth.jwt.jwks_file", base_dir)
            by_kid, only = _prepare_jwks(text)
            return cls(options, keys=by_kid, default_key=only)
        return cls(options)

    def _select_key(self, header: Mapping[str, object]) -> _VerificationKey | None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.options.algorithms:
            return None
        kid = header.get("kid")
        if kid is None or self.options.secret is not None or self.options.public_key_file:
            key = self._default_key
        elif isinstance(kid, str):
            key = self._keys.get(kid)
        else:
            return None
        if key is None or key.family != _family(alg):
            return None
        if key.alg is not None and key.alg != alg:
            return None
        return key

    def _decode(self, token: str) -> dict[str, Any] | AuthFailure:
        options = self.options
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return INVALID_TOKEN
        key = self._select_key(header)
        if key is None:
            return INVALID_TOKEN
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(options.algorithms),
                audience=options.audience,
                issuer=options.issuer,
                options={
                    "require": list(options.require),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidAudienceError:
            return WRONG_AUDIENCE
        except jwt.InvalidIssuerError:
            return WRONG_ISSUER
        except jwt.MissingRequiredClaimError as exc:
            return WRONG_AUDIENCE if exc.claim == "aud" else INVALID_TOKEN
        except jwt.PyJWTError:
            return INVALID_TOKEN
        return payload

    def _check_times(self, payload: Mapping[str, object], now: float) -> AuthFailure | None:
        leeway = self.options.leeway_seconds
        times: dict[str, float] = {}
        for claim in ("exp", "nbf", "iat"):
            if claim in payload:
                value = _as_time(payload[claim])
                if value is None:
                    return INVALID_TOKEN
                times[claim] = value
        if "exp" in times and times["exp"] <= now - leeway:
            return EXPIRED
        if "nbf" in times and times["nbf"] > now + leeway:
            return NOT_YET_VALID
        if "iat" in times and times["iat"] > now + leeway:
            return NOT_YET_VALID
        return None

    def authenticate(self, credentials: Credentials, now: float) -> Identity | AuthFailure:
        """Verify the presented JWT and map its claims to an identity."""
        options = self.options
        common = options.common
        found = extract_credential(
            credentials, common.sources, common.payload_key, common.cookie_name
        )
        if found is None:
            return common.missing()
        payload = self._decode(found.value)
        if isinstance(payload, AuthFailure):
            return payload
        refused = self._check_times(payload, now)
        if refused is not None:
            return refused
        identity = identity_from_claims(
            payload,
            options.user_id_claim,
            options.roles_claim,
            via="jwt",
            cookie_authenticated=found.from_cookie,
        )
        return INVALID_TOKEN if identity is None else identity

"""ServiceAccount tokens (bound JWTs), as pkg/serviceaccount (jwt.go, claims.go) does them.

`ServiceAccountTokenIssuer` signs what TokenRequest hands out (--service-account-signing-key-file);
`ServiceAccountTokenVerifier` checks a bearer token against the public keys
(--service-account-key-file), the issuer and the audiences. Neither looks anything up: the caller
must still confirm that the ServiceAccount (and a bound Pod/Secret) exists with the UID in the
claims, as upstream's validator does, before trusting `userinfo_from_claims`.

Legacy Secret-based tokens (issuer "kubernetes/serviceaccount", what the token controller puts in
a Secret of type kubernetes.io/service-account-token) are issued and verified here too; the caller
must also confirm that the Secret still holds the very token. Not implemented: `warnafter`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kplane.apimachinery.validation import go_quote
from kplane.apiserver.auth import UserInfo

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
_LEGACY_PREFIX = "kubernetes.io/serviceaccount/"
# go-jose's jwt.DefaultLeeway, which upstream's claim validation uses for exp/nbf/iat.
LEEWAY_SECONDS = 60

SA_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
AUTHENTICATED_GROUP = "system:authenticated"
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
POD_UID_KEY = "authentication.kubernetes.io/pod-uid"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"
NODE_UID_KEY = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"

_RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC_ALGS = ["ES256", "ES384", "ES512"]
_EC_SIGNING_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class InvalidToken(Exception):
    """A token that claims to be ours but is not valid; str() is upstream's error text."""


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise TypeError("service account signing key must be RSA or ECDSA")
    return key


def load_public_keys(pem: bytes) -> list[PublicKey]:
    """Every key in a PEM bundle: public keys, private keys (their public half) and certificates,
    as keyutil.ParsePublicKeysPEM accepts them."""
    keys: list[PublicKey] = []
    for block in _PEM_BLOCK.finditer(pem):
        kind, data = block.group(1).decode(), block.group(0)
        if kind == "CERTIFICATE":
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        elif "PRIVATE KEY" in kind:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        elif "PUBLIC KEY" in kind:
            key = serialization.load_pem_public_key(data)
        else:
            continue
        if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            keys.append(key)
    if not keys:
        raise ValueError("data does not contain any valid RSA or ECDSA public keys")
    return keys


def key_id(public_key: PublicKey) -> str:
    """keyIDFromPublicKey: unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _signing_alg(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    alg = _EC_SIGNING_ALG.get(key.curve.name)
    if alg is None:
        raise ValueError(f"unknown private key curve, must be 256, 384, or 521: {key.curve.name}")
    return alg


# ---------------------------------------------------------------------------------------------
# Issuing
# ---------------------------------------------------------------------------------------------


class ServiceAccountTokenIssuer:
    def __init__(self, private_key: PrivateKey, issuer: str = DEFAULT_ISSUER) -> None:
        self._key = private_key
        self._alg = _signing_alg(private_key)
        self._kid = key_id(private_key.public_key())
        self.issuer = issuer

    @classmethod
    def from_pem_file(cls, path: str | Path, issuer: str = DEFAULT_ISSUER) -> ServiceAccountTokenIssuer:
        return cls(load_private_key(Path(path).read_bytes()), issuer)

    def issue(self, sa_namespace: str, sa_name: str, sa_uid: str, audiences: Sequence[str],
              expiration_seconds: int, bound_object: dict[str, str] | None = None,
              now: float | None = None) -> str:
        """Sign a token for the ServiceAccount. `bound_object` is TokenRequest's boundObjectRef
        ({"kind": "Pod"|"Secret"|"Node", "name", "uid"}); it becomes the pod/secret/node claim."""
        issued = int(time.time() if now is None else now)
        private: dict[str, Any] = {"namespace": sa_namespace,
                                   "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if bound_object:
            claim = {"Pod": "pod", "Secret": "secret", "Node": "node"}.get(bound_object.get("kind", ""))
            if claim is None:
                raise ValueError(f"unsupported bound object kind: {go_quote(bound_object.get('kind', ''))}")
            private[claim] = {"name": bound_object.get("name", ""), "uid": bound_object.get("uid", "")}
        # go-jose merges public and private claims through a map, so the JSON keys come out sorted.
        claims: dict[str, Any] = {}
        if audiences:
            claims["aud"] = list(audiences)
        claims.update({
            "exp": issued + int(expiration_seconds),
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),  # ServiceAccountTokenJTI is on by default since 1.30
            "kubernetes.io": private,
            "nbf": issued,
            "sub": SA_PREFIX + f"{sa_namespace}:{sa_name}",
        })
        # Upstream's header carries alg and kid only (no "typ").
        return jwt.encode(claims, self._key, algorithm=self._alg, headers={"kid": self._kid, "typ": None})

    def issue_legacy(self, sa_namespace: str, sa_name: str, sa_uid: str, secret_name: str) -> str:
        """A token for a Secret of type kubernetes.io/service-account-token (LegacyClaims): no
        expiry, no audience; valid while the Secret holds it and the ServiceAccount exists."""
        claims = {
            "iss": LEGACY_ISSUER,
            _LEGACY_PREFIX + "namespace": sa_namespace,
            _LEGACY_PREFIX + "secret.name": secret_name,
            _LEGACY_PREFIX + "service-account.name": sa_name,
            _LEGACY_PREFIX + "service-account.uid": sa_uid,
            "sub": SA_PREFIX + f"{sa_namespace}:{sa_name}",
        }
        return jwt.encode(claims, self._key, algorithm=self._alg, headers={"kid": self._kid, "typ": None})


# ---------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------


def _go_slice(values: Iterable[str]) -> str:
    return "[" + " ".join(go_quote(v) for v in values) + "]"


class ServiceAccountTokenVerifier:
    def __init__(self, public_keys: Sequence[PublicKey], issuers: Sequence[str] = (DEFAULT_ISSUER,),
                 api_audiences: Sequence[str] | None = None) -> None:
        """`api_audiences` is --api-audiences; kube-apiserver defaults it to the issuer."""
        self._keys = list(public_keys)
        self.issuers = list(issuers)
        self.api_audiences = list(self.issuers[:1] if api_audiences is None else api_audiences)

    @classmethod
    def from_pem_files(cls, paths: Iterable[str | Path], issuers: Sequence[str] = (DEFAULT_ISSUER,),
                       api_audiences: Sequence[str] | None = None) -> ServiceAccountTokenVerifier:
        keys = [k for p in paths for k in load_public_keys(Path(p).read_bytes())]
        return cls(keys, issuers, api_audiences)

    def validate(self, token: str, audiences: Sequence[str] | None = None,
                 now: float | None = None) -> dict[str, Any] | None:
        """The verified claims; None if the token is not one of ours (not a JWT, or another
        issuer); InvalidToken if it is ours but bad. `audiences` are the audiences the request is
        for (TokenReview's spec.audiences); None or empty means the API server's own."""
        try:
            unverified = json.loads(jwt.api_jws.PyJWS().decode(token, options={"verify_signature": False}))
        except (jwt.InvalidTokenError, ValueError):
            return None
        if not isinstance(unverified, dict) or unverified.get("iss") not in (*self.issuers, LEGACY_ISSUER):
            return None
        claims = self._verified_payload(token)
        if claims.get("iss") == LEGACY_ISSUER:
            claims = _legacy_as_bound(claims)

        token_auds = claims.get("aud") or []
        if isinstance(token_auds, str):
            token_auds = [token_auds]
        if not token_auds:
            token_auds = self.api_audiences  # legacy tokens: only the API server's audiences
        wanted = list(audiences) if audiences else self.api_audiences
        if not set(token_auds) & set(wanted) and self.api_audiences:
            raise InvalidToken(f"token audiences {_go_slice(token_auds)} is invalid for the target "
                               f"audiences {_go_slice(wanted)}")

        current = time.time() if now is None else now
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if exp is not None and not current < exp + LEEWAY_SECONDS:
            raise InvalidToken("service account token has expired")
        if (nbf is not None and current + LEEWAY_SECONDS < nbf) or (iat is not None and current + LEEWAY_SECONDS < iat):
            raise InvalidToken("service account token could not be validated")

        private = claims.get("kubernetes.io")
        if not isinstance(private, dict) or not private.get("namespace") \
                or not (private.get("serviceaccount") or {}).get("name"):
            raise InvalidToken("service account token is missing its kubernetes.io claims")
        return claims

    def verify(self, token: str, audiences: Sequence[str] | None = None,
               now: float | None = None) -> dict[str, Any] | None:
        """validate(), with every failure as None."""
        try:
            return self.validate(token, audiences, now)
        except InvalidToken:
            return None

    def _verified_payload(self, token: str) -> dict[str, Any]:
        # Upstream tries every configured key until one verifies.
        errors: list[str] = []
        for key in self._keys:
            algs = _RSA_ALGS if isinstance(key, rsa.RSAPublicKey) else _EC_ALGS
            try:
                payload = json.loads(jwt.api_jws.PyJWS().decode(token, key, algorithms=algs))
            except (jwt.InvalidTokenError, ValueError):
                errors.append("go-jose/go-jose: error in cryptographic primitive")
                continue
            if isinstance(payload, dict):
                return payload
        unique = list(dict.fromkeys(errors)) or ["no keys configured"]
        raise InvalidToken(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")


# ---------------------------------------------------------------------------------------------
# Who the token says it is
# ---------------------------------------------------------------------------------------------


def _legacy_as_bound(claims: dict[str, Any]) -> dict[str, Any]:
    """A legacy token's claims in the bound tokens' shape (its Secret as the bound object), so the
    rest of the checks and userinfo_from_claims serve both; "legacy" marks where they came from."""
    namespace = claims.get(_LEGACY_PREFIX + "namespace")
    name = claims.get(_LEGACY_PREFIX + "service-account.name")
    secret = claims.get(_LEGACY_PREFIX + "secret.name")
    if not namespace or not name or not secret:
        raise InvalidToken("service account token is missing its kubernetes.io claims")
    return {"iss": LEGACY_ISSUER, "sub": claims.get("sub", ""), "legacy": True,
            "kubernetes.io": {"namespace": namespace, "secret": {"name": secret},
                              "serviceaccount": {"name": name,
                                                 "uid": claims.get(_LEGACY_PREFIX + "service-account.uid", "")}}}


def userinfo_from_claims(claims: dict[str, Any]) -> UserInfo:
    """ServiceAccountInfo.UserInfo(), plus system:authenticated (which upstream's authenticated
    group adder appends to every non-anonymous user)."""
    private = claims.get("kubernetes.io") or {}
    namespace = private.get("namespace", "")
    sa = private.get("serviceaccount") or {}
    pod, node = private.get("pod") or {}, private.get("node") or {}
    extra: dict[str, tuple[str, ...]] = {}
    if pod.get("name") and pod.get("uid"):
        extra[POD_NAME_KEY] = (pod["name"],)
        extra[POD_UID_KEY] = (pod["uid"],)
    if claims.get("jti"):
        extra[CREDENTIAL_ID_KEY] = ("JTI=" + claims["jti"],)
    if node.get("name"):
        extra[NODE_NAME_KEY] = (node["name"],)
        if node.get("uid"):
            extra[NODE_UID_KEY] = (node["uid"],)
    return UserInfo(
        name=f"{SA_PREFIX}{namespace}:{sa.get('name', '')}",
        groups=(ALL_SERVICE_ACCOUNTS_GROUP, f"{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}", AUTHENTICATED_GROUP),
        uid=sa.get("uid", ""),
        extra=extra,
    )

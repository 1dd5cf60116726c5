"""Authentication: static token file, ServiceAccount JWTs, union and the authenticated group."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kplane.apiserver.auth import UserInfo
from kplane.controlplane.authn.serviceaccount import (
    DEFAULT_ISSUER,
    InvalidToken,
    ServiceAccountTokenIssuer,
    ServiceAccountTokenVerifier,
    key_id,
    load_public_keys,
    userinfo_from_claims,
)
from kplane.controlplane.authn.tokenfile import TokenFileAuthenticator
from kplane.controlplane.authn.union import anonymous_user, authenticate_union, with_authenticated_group

# ---------------------------------------------------------------------------------------------
# Token file
# ---------------------------------------------------------------------------------------------

TOKEN_CSV = '''\
abc123,alice,uid-1,"devs,ops"
def456,bob,uid-2
ghi789,carol,uid-3,single,ignored-extra-column

,nobody,uid-4
dup,first,uid-5
dup,second,uid-6,""
'''


@pytest.mark.parametrize("token, expected", [
    ("abc123", UserInfo(name="alice", uid="uid-1", groups=("devs", "ops"))),
    ("def456", UserInfo(name="bob", uid="uid-2", groups=())),
    ("ghi789", UserInfo(name="carol", uid="uid-3", groups=("single",))),
    ("dup", UserInfo(name="second", uid="uid-6", groups=("",))),  # last wins; "" splits to [""]
    ("", None),
    ("abc12", None),
    ("ABC123", None),
])
def test_token_file(token: str, expected: UserInfo | None) -> None:
    auth = TokenFileAuthenticator.from_csv(TOKEN_CSV, "tokens.csv")
    assert auth.authenticate(token) == expected
    assert len(auth) == 4


def test_token_file_from_path_and_short_record(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text("t1,u1,id1\n")
    assert TokenFileAuthenticator.from_file(path).authenticate("t1") == UserInfo(name="u1", uid="id1")
    path.write_text("t1,u1\n")
    with pytest.raises(ValueError) as err:
        TokenFileAuthenticator.from_file(path)
    assert str(err.value) == (f"token file '{path}' must have at least 3 columns (token, user name, user uid), "
                              f"found 2")


# ---------------------------------------------------------------------------------------------
# ServiceAccount JWTs
# ---------------------------------------------------------------------------------------------

NOW = 1_700_000_000
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize("key, alg", [(EC_KEY, "ES256"), (RSA_KEY, "RS256")])
def test_issue_and_verify_round_trip(key, alg: str) -> None:
    token = ServiceAccountTokenIssuer(key).issue("ns1", "builder", "sa-uid", [DEFAULT_ISSUER, "vault"], 3600,
                                                 now=NOW)
    header, payload, _sig = token.split(".")
    assert b64json(header) == {"alg": alg, "kid": key_id(key.public_key())}
    claims = b64json(payload)
    assert list(claims) == ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:ns1:builder"
    assert claims["aud"] == [DEFAULT_ISSUER, "vault"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 3600)
    assert claims["kubernetes.io"] == {"namespace": "ns1", "serviceaccount": {"name": "builder", "uid": "sa-uid"}}
    assert len(claims["jti"]) == 36

    verifier = ServiceAccountTokenVerifier([key.public_key()])
    assert verifier.validate(token, now=NOW + 10) == claims
    assert verifier.verify(token, ["vault"], now=NOW) == claims


def test_verify_rejects_expiry_with_leeway() -> None:
    token = ServiceAccountTokenIssuer(EC_KEY).issue("ns", "sa", "u", [DEFAULT_ISSUER], 600, now=NOW)
    verifier = ServiceAccountTokenVerifier([EC_KEY.public_key()])
    assert verifier.verify(token, now=NOW + 600 + 59) is not None  # go-jose's 60 s leeway
    assert verifier.verify(token, now=NOW + 600 + 60) is None
    with pytest.raises(InvalidToken, match="^service account token has expired$"):
        verifier.validate(token, now=NOW + 10_000)
    with pytest.raises(InvalidToken, match="^service account token could not be validated$"):
        verifier.validate(token, now=NOW - 61)  # nbf/iat in the future


def test_verify_rejects_audience_mismatch() -> None:
    token = ServiceAccountTokenIssuer(RSA_KEY).issue("ns", "sa", "u", ["vault"], 600, now=NOW)
    verifier = ServiceAccountTokenVerifier([RSA_KEY.public_key()])
    assert verifier.verify(token, now=NOW) is None  # API server audience by default
    assert verifier.verify(token, [], now=NOW) is None  # empty spec.audiences means the same
    with pytest.raises(InvalidToken) as err:
        verifier.validate(token, ["other", "x"], now=NOW)
    assert str(err.value) == 'token audiences ["vault"] is invalid for the target audiences ["other" "x"]'
    assert verifier.verify(token, ["other", "vault"], now=NOW) is not None


def test_verify_rejects_wrong_key_and_tampering_and_ignores_foreign_tokens() -> None:
    token = ServiceAccountTokenIssuer(EC_KEY).issue("ns", "sa", "u", [DEFAULT_ISSUER], 600, now=NOW)
    other = ServiceAccountTokenVerifier([ec.generate_private_key(ec.SECP256R1()).public_key(),
                                         RSA_KEY.public_key()])
    with pytest.raises(InvalidToken, match="error in cryptographic primitive"):
        other.validate(token, now=NOW)
    # any of several keys may verify
    assert ServiceAccountTokenVerifier([RSA_KEY.public_key(), EC_KEY.public_key()]).verify(token, now=NOW)

    header, payload, sig = token.split(".")
    forged = b64json(payload) | {"sub": "system:serviceaccount:kube-system:admin"}
    forged_part = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    verifier = ServiceAccountTokenVerifier([EC_KEY.public_key()])
    assert verifier.verify(f"{header}.{forged_part}.{sig}", now=NOW) is None

    foreign = jwt.encode({"iss": "https://accounts.example.com", "sub": "x"}, "s" * 32, algorithm="HS256")
    assert verifier.validate(foreign, now=NOW) is None  # not ours: another authenticator's business
    assert verifier.validate("not-a-jwt", now=NOW) is None


def test_custom_issuer_and_api_audiences() -> None:
    issuer = ServiceAccountTokenIssuer(EC_KEY, issuer="https://kplane.local")
    token = issuer.issue("ns", "sa", "u", ["https://kplane.local"], 600, now=NOW)
    assert ServiceAccountTokenVerifier([EC_KEY.public_key()]).validate(token, now=NOW) is None
    verifier = ServiceAccountTokenVerifier([EC_KEY.public_key()], issuers=["https://kplane.local"])
    assert verifier.api_audiences == ["https://kplane.local"]
    assert verifier.verify(token, now=NOW) is not None


def test_keys_from_pem_files(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.key"
    key_file.write_bytes(EC_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    pub_file = tmp_path / "sa.pub"
    pub_file.write_bytes(
        RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        + EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    assert len(load_public_keys(pub_file.read_bytes())) == 2
    assert len(load_public_keys(key_file.read_bytes())) == 1  # a private key file also serves
    with pytest.raises(ValueError):
        load_public_keys(b"no pem here")
    token = ServiceAccountTokenIssuer.from_pem_file(key_file).issue("ns", "sa", "u", [DEFAULT_ISSUER], 600, now=NOW)
    assert ServiceAccountTokenVerifier.from_pem_files([pub_file]).verify(token, now=NOW) is not None


def test_bound_pod_token_userinfo() -> None:
    token = ServiceAccountTokenIssuer(EC_KEY).issue(
        "ns1", "builder", "sa-uid", [DEFAULT_ISSUER], 3600,
        bound_object={"kind": "Pod", "name": "web-0", "uid": "pod-uid"}, now=NOW)
    claims = ServiceAccountTokenVerifier([EC_KEY.public_key()]).validate(token, now=NOW)
    assert claims["kubernetes.io"]["pod"] == {"name": "web-0", "uid": "pod-uid"}
    assert userinfo_from_claims(claims) == UserInfo(
        name="system:serviceaccount:ns1:builder",
        groups=("system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"),
        uid="sa-uid",
        extra={"authentication.kubernetes.io/pod-name": ("web-0",),
               "authentication.kubernetes.io/pod-uid": ("pod-uid",),
               "authentication.kubernetes.io/credential-id": ("JTI=" + claims["jti"],)})
    with pytest.raises(ValueError):
        ServiceAccountTokenIssuer(EC_KEY).issue("ns", "sa", "u", [], 600, bound_object={"kind": "Deployment"})


# ---------------------------------------------------------------------------------------------
# Union and the authenticated group
# ---------------------------------------------------------------------------------------------


def test_union_first_match_wins_and_errors_do_not_stop_it() -> None:
    def boom(req: str) -> UserInfo | None:
        raise RuntimeError("bad cert")

    first = UserInfo(name="first")
    errors: list[Exception] = []
    chain = [lambda req: None, boom, lambda req: first if req == "ok" else None, lambda req: UserInfo(name="late")]
    assert authenticate_union(chain, "ok", errors) is first
    assert [str(e) for e in errors] == ["bad cert"]
    assert authenticate_union(chain[:3], "nope") is None


@pytest.mark.parametrize("user, groups", [
    (UserInfo(name="alice", groups=("devs",)), ("devs", "system:authenticated")),
    (UserInfo(name="alice", groups=("system:authenticated", "devs")), ("system:authenticated", "devs")),
    (UserInfo(name="weird", groups=("system:unauthenticated",)), ("system:unauthenticated",)),
    (anonymous_user(), ("system:unauthenticated",)),
])
def test_with_authenticated_group(user: UserInfo, groups: tuple[str, ...]) -> None:
    out = with_authenticated_group(user)
    assert out.groups == groups
    assert (out.name, out.uid) == (user.name, user.uid)


# ---------------------------------------------------------------------------------------------
# The ServiceAccount token validator: the bound object must still exist
# ---------------------------------------------------------------------------------------------


def _sa_authenticator(objects: dict[tuple[str, str, str], dict]):
    from kplane.controlplane.authentication import ServiceAccountTokenAuthenticator

    def getter(kind: str):
        return lambda namespace, name: objects.get((kind, namespace, name))
    verifier = ServiceAccountTokenVerifier([EC_KEY.public_key()])
    return ServiceAccountTokenAuthenticator(verifier, getter("sa"), getter("secret"))


def test_secret_bound_token_is_invalidated_with_its_secret() -> None:
    import time

    from kplane.controlplane.authentication import TokenError

    objects = {("sa", "ns", "sa1"): {"metadata": {"name": "sa1", "uid": "sa-uid"}},
               ("secret", "ns", "s1"): {"metadata": {"name": "s1", "uid": "secret-uid"}}}
    auth = _sa_authenticator(objects)
    token = ServiceAccountTokenIssuer(EC_KEY).issue(
        "ns", "sa1", "sa-uid", [DEFAULT_ISSUER], 3600,
        bound_object={"kind": "Secret", "name": "s1", "uid": "secret-uid"})
    assert auth.authenticate(token).name == "system:serviceaccount:ns:sa1"
    # Deleted just now (graceful deletion, inside the leeway): still valid, as upstream.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    objects[("secret", "ns", "s1")]["metadata"]["deletionTimestamp"] = now
    assert auth.authenticate(token).name == "system:serviceaccount:ns:sa1"
    objects[("secret", "ns", "s1")]["metadata"]["deletionTimestamp"] = "2000-01-01T00:00:00Z"
    with pytest.raises(TokenError, match="^service account token has been invalidated$"):
        auth.authenticate(token)
    del objects[("secret", "ns", "s1")]
    with pytest.raises(TokenError, match="^service account token has been invalidated$"):
        auth.authenticate(token)
    objects[("secret", "ns", "s1")] = {"metadata": {"name": "s1", "uid": "other-uid"}}  # recreated
    with pytest.raises(TokenError, match=r"^secret UID \(other-uid\) does not match service account secret ref "
                                         r"claim \(secret-uid\)$"):
        auth.authenticate(token)
    # kplane serves no Pods or Nodes, so a token bound to one can never be valid.
    pod_token = ServiceAccountTokenIssuer(EC_KEY).issue(
        "ns", "sa1", "sa-uid", [DEFAULT_ISSUER], 3600, bound_object={"kind": "Pod", "name": "p", "uid": "pod-uid"})
    with pytest.raises(TokenError, match="invalidated"):
        auth.authenticate(pod_token)
    # A bound token's ServiceAccount deleted more than a minute ago (a finalizer keeps it) is refused.
    objects[("sa", "ns", "sa1")]["metadata"]["deletionTimestamp"] = "2000-01-01T00:00:00Z"
    plain = ServiceAccountTokenIssuer(EC_KEY).issue("ns", "sa1", "sa-uid", [DEFAULT_ISSUER], 3600)
    with pytest.raises(TokenError, match="^service account ns/sa1 has been deleted$"):
        auth.authenticate(plain)

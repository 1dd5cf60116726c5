"""The review APIs and TokenRequest, as non-stored (virtual) registries.

authentication.k8s.io/v1: TokenReview, SelfSubjectReview (`kubectl auth whoami`).
authorization.k8s.io/v1: SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview
(`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`).
core/v1 serviceaccounts/token: TokenRequest (`kubectl create token`).

Each create function mirrors its upstream REST storage (pkg/registry/authentication/*,
pkg/registry/authorization/*, pkg/registry/core/serviceaccount/storage/token.go).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt

from kplane.apimachinery import errors
from kplane.apimachinery.errors import Cause, field_invalid
from kplane.apimachinery.meta import now_rfc3339
from kplane.apimachinery.typeschema import array, boolean, integer, kind_schema, obj, string
from kplane.apiserver.auth import ALLOW, DENY, RequestAttributes, UserInfo, user_info
from kplane.apiserver.registry import WriteOptions
from kplane.apiserver.resource import Obj, ResourceDef
from kplane.apiserver.virtual import VirtualRegistry
from kplane.controlplane.authentication import TokenAuthenticator, TokenError
from kplane.controlplane.authn.serviceaccount import ServiceAccountTokenIssuer
from kplane.controlplane.authorization import ControlPlaneAuthorizer

AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"
AUTHN_V1 = "io.k8s.api.authentication.v1."  # upstream's OpenAPI definition names
AUTHZ_V1 = "io.k8s.api.authorization.v1."

# ---------------------------------------------------------------------------------------------
# Schemas (compact: the fields, without every upstream description)
# ---------------------------------------------------------------------------------------------

_STRINGS = array({"type": "string", "default": ""})
_EXTRA = {"type": "object", "additionalProperties": _STRINGS}

USER_INFO = obj("UserInfo holds the information about the user needed to implement the user.Info interface.", {
    "extra": _EXTRA, "groups": array({"type": "string", "default": ""}, list_type="atomic"),
    "uid": string(), "username": string(),
}, name=AUTHN_V1 + "UserInfo")

RESOURCE_ATTRIBUTES = obj("ResourceAttributes includes the authorization attributes available for resource "
                          "requests to the Authorizer interface", {
    "group": string(), "name": string(), "namespace": string(), "resource": string(),
    "subresource": string(), "verb": string(), "version": string(),
    "fieldSelector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    "labelSelector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}, name=AUTHZ_V1 + "ResourceAttributes")
NON_RESOURCE_ATTRIBUTES = obj("NonResourceAttributes includes the authorization attributes available for "
                              "non-resource requests to the Authorizer interface", {
    "path": string(), "verb": string()}, name=AUTHZ_V1 + "NonResourceAttributes")
SAR_STATUS = obj("SubjectAccessReviewStatus", {
    "allowed": boolean(), "denied": boolean(), "evaluationError": string(), "reason": string()},
    name=AUTHZ_V1 + "SubjectAccessReviewStatus")
SAR_SPEC = obj("SubjectAccessReviewSpec is a description of the access request.", {
    "extra": _EXTRA, "groups": array({"type": "string", "default": ""}, list_type="atomic"),
    "nonResourceAttributes": NON_RESOURCE_ATTRIBUTES, "resourceAttributes": RESOURCE_ATTRIBUTES,
    "uid": string(), "user": string(),
}, name=AUTHZ_V1 + "SubjectAccessReviewSpec")
SSAR_SPEC = obj("SelfSubjectAccessReviewSpec is a description of the access request.", {
    "nonResourceAttributes": NON_RESOURCE_ATTRIBUTES, "resourceAttributes": RESOURCE_ATTRIBUTES},
    name=AUTHZ_V1 + "SelfSubjectAccessReviewSpec")
RULES_STATUS = obj(
    "SubjectRulesReviewStatus contains the result of a rules check. This check can be incomplete depending on "
    "the set of authorizers the server is configured with and any errors experienced during evaluation.", {
    "evaluationError": string(), "incomplete": boolean(),
    "nonResourceRules": array(obj(
        "NonResourceRule holds information that describes a rule for the non-resource",
        {"nonResourceURLs": _STRINGS, "verbs": _STRINGS}, name=AUTHZ_V1 + "NonResourceRule")),
    "resourceRules": array(obj(
        "ResourceRule is the list of actions the subject is allowed to perform on resources. The list ordering "
        "isn't significant, may contain duplicates, and possibly be incomplete.",
        {"apiGroups": _STRINGS, "resourceNames": _STRINGS, "resources": _STRINGS, "verbs": _STRINGS},
        name=AUTHZ_V1 + "ResourceRule")),
}, name=AUTHZ_V1 + "SubjectRulesReviewStatus")
BOUND_OBJECT_REF = obj("BoundObjectReference is a reference to an object that a token is bound to.", {
    "apiVersion": string(), "kind": string(), "name": string(), "uid": string()},
    name=AUTHN_V1 + "BoundObjectReference")
TOKEN_REVIEW_SPEC = obj("TokenReviewSpec is a description of the token authentication request.",
                        {"audiences": _STRINGS, "token": string()}, name=AUTHN_V1 + "TokenReviewSpec")
TOKEN_REVIEW_STATUS = obj("TokenReviewStatus is the result of the token authentication request.", {
    "audiences": _STRINGS, "authenticated": boolean(), "error": string(), "user": USER_INFO},
    name=AUTHN_V1 + "TokenReviewStatus")
SELF_SUBJECT_REVIEW_STATUS = obj("SelfSubjectReviewStatus is filled by the kube-apiserver and sent back to a user.",
                                 {"userInfo": USER_INFO}, name=AUTHN_V1 + "SelfSubjectReviewStatus")
RULES_SPEC = obj("SelfSubjectRulesReviewSpec defines the specification for SelfSubjectRulesReview.",
                 {"namespace": string()}, name=AUTHZ_V1 + "SelfSubjectRulesReviewSpec")
TOKEN_REQUEST_SPEC = obj("TokenRequestSpec contains client provided parameters of a token request.", {
    "audiences": _STRINGS, "boundObjectRef": BOUND_OBJECT_REF, "expirationSeconds": integer(fmt="int64")},
    name=AUTHN_V1 + "TokenRequestSpec")
TOKEN_REQUEST_STATUS = obj("TokenRequestStatus is the result of a token request.", {
    "expirationTimestamp": string(), "token": string()}, name=AUTHN_V1 + "TokenRequestStatus")


def _review_def(group: str, kind: str, plural: str, schema: Obj, namespaced: bool = False) -> ResourceDef:
    return ResourceDef(group=group, version="v1", kind=kind, plural=plural, namespaced=namespaced,
                       verbs=["create"], schema=schema, openapi_name=f"io.k8s.api.{group.split('.')[0]}.v1.{kind}")


def review_defs() -> dict[str, ResourceDef]:
    return {
        "tokenreviews": _review_def(AUTHN, "TokenReview", "tokenreviews", kind_schema(
            "TokenReview attempts to authenticate a token to a known user.", {
                "spec": TOKEN_REVIEW_SPEC, "status": TOKEN_REVIEW_STATUS,
            }, required=["spec"])),
        "selfsubjectreviews": _review_def(AUTHN, "SelfSubjectReview", "selfsubjectreviews", kind_schema(
            "SelfSubjectReview contains the user information that the kube-apiserver has about the user "
            "making this request.", {"status": SELF_SUBJECT_REVIEW_STATUS})),
        "subjectaccessreviews": _review_def(AUTHZ, "SubjectAccessReview", "subjectaccessreviews", kind_schema(
            "SubjectAccessReview checks whether or not a user or group can perform an action.",
            {"spec": SAR_SPEC, "status": SAR_STATUS}, required=["spec"])),
        "localsubjectaccessreviews": _review_def(
            AUTHZ, "LocalSubjectAccessReview", "localsubjectaccessreviews", kind_schema(
                "LocalSubjectAccessReview checks whether or not a user or group can perform an action in a "
                "given namespace.", {"spec": SAR_SPEC, "status": SAR_STATUS}, required=["spec"]),
            namespaced=True),
        "selfsubjectaccessreviews": _review_def(
            AUTHZ, "SelfSubjectAccessReview", "selfsubjectaccessreviews", kind_schema(
                "SelfSubjectAccessReview checks whether or the current user can perform an action.",
                {"spec": SSAR_SPEC, "status": SAR_STATUS}, required=["spec"])),
        "selfsubjectrulesreviews": _review_def(
            AUTHZ, "SelfSubjectRulesReview", "selfsubjectrulesreviews", kind_schema(
                "SelfSubjectRulesReview enumerates the set of actions the current user can perform within "
                "a namespace.", {"spec": RULES_SPEC, "status": RULES_STATUS}, required=["spec"])),
    }


def token_request_def() -> ResourceDef:
    # Keyed under core/v1 like the parent; upstream reports group authentication.k8s.io in discovery.
    return ResourceDef(group="", version="v1", kind="TokenRequest", plural="serviceaccounts/token",
                       verbs=["create"], openapi_name="io.k8s.api.authentication.v1.TokenRequest",
                       schema=kind_schema("TokenRequest requests a token for a given service account.", {
                           "spec": TOKEN_REQUEST_SPEC, "status": TOKEN_REQUEST_STATUS,
                       }, required=["spec"]))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


TOKEN_REQUEST_VERSION = "authentication.k8s.io/v1"


def _api_version(rdef: ResourceDef) -> str:
    # TokenRequest is served under core/v1 but is an authentication.k8s.io/v1 kind.
    return TOKEN_REQUEST_VERSION if rdef.kind == "TokenRequest" else rdef.api_version


def _response(body: Obj, rdef: ResourceDef) -> Obj:
    """The request object as upstream echoes it: typed (kind/apiVersion set), metadata kept."""
    out = dict(body)
    out["kind"], out["apiVersion"] = rdef.kind, _api_version(rdef)
    meta = dict(out.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    out["metadata"] = meta
    return out


def _check_type(body: Obj, rdef: ResourceDef) -> None:
    expected = _api_version(rdef)
    if body.get("apiVersion") and body["apiVersion"] != expected:
        raise errors.bad_request(f"the API version in the data ({body['apiVersion']}) does not match the "
                                 f"expected API version ({expected})")
    if body.get("kind") and body["kind"] != rdef.kind:
        raise errors.bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind "
                                 f"({rdef.kind})")


def _spec(body: Obj) -> Obj:
    spec = body.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise errors.bad_request("spec must be an object")
    return spec


def _attributes_from_spec(user: UserInfo, spec: Obj) -> RequestAttributes:
    ra = spec.get("resourceAttributes")
    if ra is not None:
        return RequestAttributes(user=user, verb=ra.get("verb", ""), is_resource_request=True, path="",
                                 api_group=ra.get("group", ""), api_version=ra.get("version", ""),
                                 resource=ra.get("resource", ""), subresource=ra.get("subresource", ""),
                                 namespace=ra.get("namespace", ""), name=ra.get("name", ""))
    nra = spec.get("nonResourceAttributes") or {}
    return RequestAttributes(user=user, verb=nra.get("verb", ""), is_resource_request=False,
                             path=nra.get("path", ""))


def _attribute_causes(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra is not None and nra is not None:
        causes.append(field_invalid("spec.nonResourceAttributes", nra,
                                    "cannot be specified in combination with resourceAttributes"))
    if ra is None and nra is None:
        causes.append(field_invalid("spec.resourceAttributes", None,
                                    "exactly one of nonResourceAttributes or resourceAttributes must be "
                                    "specified"))
    return causes


def _status(decision: str, reason: str) -> Obj:
    status: Obj = {"allowed": decision == ALLOW}
    if decision == DENY:
        status["denied"] = True
    if reason:
        status["reason"] = reason
    return status


# ---------------------------------------------------------------------------------------------
# The registries
# ---------------------------------------------------------------------------------------------


class Reviews:
    def __init__(self, *, authorizer: ControlPlaneAuthorizer, tokens: TokenAuthenticator,
                 api_audiences: list[str], issuer: ServiceAccountTokenIssuer | None, server: Any) -> None:
        self.authorizer = authorizer
        self.tokens = tokens
        self.api_audiences = api_audiences
        self.issuer = issuer
        self.server = server
        self.defs = review_defs()

    def install(self, server: Any) -> None:
        fns = {"tokenreviews": self.token_review, "selfsubjectreviews": self.self_subject_review,
               "subjectaccessreviews": self.subject_access_review,
               "localsubjectaccessreviews": self.local_subject_access_review,
               "selfsubjectaccessreviews": self.self_subject_access_review,
               "selfsubjectrulesreviews": self.self_subject_rules_review}
        for plural, fn in fns.items():
            server.install_virtual(VirtualRegistry(self.defs[plural], create_fn=fn))
        if self.issuer is not None:
            server.install_virtual(VirtualRegistry(token_request_def(), create_fn=self.token_request))

    # ---- authentication.k8s.io ----------------------------------------------------------------

    async def token_review(self, _namespace: str, body: Obj, _opts: WriteOptions) -> Obj:
        rdef = self.defs["tokenreviews"]
        _check_type(body, rdef)
        spec = _spec(body)
        token = spec.get("token") or ""
        if not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        auds = list(spec.get("audiences") or []) or list(self.api_audiences)
        status: Obj = {}
        try:
            user = self.tokens.authenticate(token, auds)
        except TokenError as e:
            status["user"] = {}
            status["error"] = str(e)
        else:
            status["authenticated"] = True
            status["user"] = user_info(user)
            token_auds = _jwt_audiences(token)
            status["audiences"] = [a for a in auds if a in token_auds] if token_auds is not None else auds
        out = _response(body, rdef)
        out["status"] = status
        return out

    async def self_subject_review(self, _namespace: str, body: Obj, opts: WriteOptions) -> Obj:
        rdef = self.defs["selfsubjectreviews"]
        _check_type(body, rdef)
        out = _response(body, rdef)
        out["metadata"]["creationTimestamp"] = now_rfc3339()
        out["status"] = {"userInfo": user_info(opts.user)}
        return out

    # ---- authorization.k8s.io -----------------------------------------------------------------

    def _review(self, rdef: ResourceDef, body: Obj, user: UserInfo, causes: list[Cause]) -> Obj:
        if causes:
            raise errors.invalid(rdef.kind, "", causes, rdef.group)
        decision, reason = self.authorizer.authorize_sync(_attributes_from_spec(user, _spec(body)))
        out = _response(body, rdef)
        out["status"] = _status(decision, reason)
        return out

    def _spec_user(self, spec: Obj) -> UserInfo:
        extra = {k: tuple(v or ()) for k, v in (spec.get("extra") or {}).items()}
        return UserInfo(spec.get("user") or "", tuple(spec.get("groups") or ()), spec.get("uid") or "", extra)

    async def subject_access_review(self, _namespace: str, body: Obj, _opts: WriteOptions) -> Obj:
        rdef = self.defs["subjectaccessreviews"]
        _check_type(body, rdef)
        spec = _spec(body)
        causes = _attribute_causes(spec)
        if not spec.get("user") and not spec.get("groups"):
            causes.append(field_invalid("spec.user", spec.get("user") or "",
                                        "at least one of user or group must be specified"))
        return self._review(rdef, body, self._spec_user(spec), causes)

    async def local_subject_access_review(self, namespace: str, body: Obj, _opts: WriteOptions) -> Obj:
        rdef = self.defs["localsubjectaccessreviews"]
        _check_type(body, rdef)
        meta = body.setdefault("metadata", {}) if isinstance(body.get("metadata"), dict) or \
            body.get("metadata") is None else {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        meta["namespace"] = namespace
        spec = _spec(body)
        causes = _attribute_causes(spec)
        if not spec.get("user") and not spec.get("groups"):
            causes.append(field_invalid("spec.user", spec.get("user") or "",
                                        "at least one of user or group must be specified"))
        ra = spec.get("resourceAttributes")
        if ra is not None and (ra.get("namespace") or "") != namespace:
            causes.append(field_invalid("spec.resourceAttributes.namespace", ra.get("namespace") or "",
                                        "must match metadata.namespace"))
        if spec.get("nonResourceAttributes") is not None:
            causes.append(field_invalid("spec.nonResourceAttributes", spec["nonResourceAttributes"],
                                        "disallowed on this kind of request"))
        return self._review(rdef, body, self._spec_user(spec), causes)

    async def self_subject_access_review(self, _namespace: str, body: Obj, opts: WriteOptions) -> Obj:
        rdef = self.defs["selfsubjectaccessreviews"]
        _check_type(body, rdef)
        return self._review(rdef, body, opts.user, _attribute_causes(_spec(body)))

    async def self_subject_rules_review(self, _namespace: str, body: Obj, opts: WriteOptions) -> Obj:
        rdef = self.defs["selfsubjectrulesreviews"]
        _check_type(body, rdef)
        namespace = _spec(body).get("namespace") or ""
        if not namespace:
            raise errors.bad_request("no namespace on request")
        resource, non_resource, incomplete, error = self.authorizer.rules_for(opts.user, namespace)
        status: Obj = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": incomplete}
        if error:
            status["evaluationError"] = error
        out = _response({k: v for k, v in body.items() if k != "spec"}, rdef)
        out["spec"] = {}
        out["status"] = status
        return out

    # ---- core/v1 serviceaccounts/token --------------------------------------------------------

    async def token_request(self, namespace: str, body: Obj, opts: WriteOptions) -> Obj:
        assert self.issuer is not None
        rdef = token_request_def()
        _check_type(body, rdef)
        name = opts.name
        meta = body.get("metadata") or {}
        causes: list[Cause] = []
        if meta.get("name") and meta["name"] != name:
            causes.append(field_invalid("metadata.name", meta["name"], "must match the service account name if "
                                        "specified"))
        if meta.get("namespace") and meta["namespace"] != namespace:
            causes.append(field_invalid("metadata.namespace", meta["namespace"],
                                        "must match the service account namespace if specified"))
        spec = dict(_spec(body))
        expiration = spec.get("expirationSeconds")
        if expiration is None:
            expiration = 3600
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            raise errors.bad_request("spec.expirationSeconds must be an integer")
        if expiration < 600:
            causes.append(field_invalid("spec.expirationSeconds", expiration,
                                        "may not specify a duration less than 10 minutes"))
        if expiration > 1 << 32:
            causes.append(field_invalid("spec.expirationSeconds", expiration,
                                        "may not specify a duration larger than 2^32 seconds"))
        if causes:
            raise errors.invalid("TokenRequest", name, causes, "authentication.k8s.io")
        sa = await self.server.registry("", "v1", "serviceaccounts").get(namespace, name)
        audiences = list(spec.get("audiences") or []) or list(self.api_audiences)
        bound = None
        ref = spec.get("boundObjectRef")
        if ref:
            bound = await self._bound_object(namespace, ref)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        token = self.issuer.issue(namespace, name, sa["metadata"]["uid"], audiences, expiration, bound,
                                  now=now.timestamp())
        spec["audiences"] = audiences
        spec["expirationSeconds"] = expiration
        spec.setdefault("boundObjectRef", None)
        out = _response(body, rdef)
        out["metadata"].update({"name": name, "namespace": namespace})
        out["spec"] = spec
        expires = now + dt.timedelta(seconds=expiration)
        out["status"] = {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return out

    async def _bound_object(self, namespace: str, ref: Obj) -> dict[str, str]:
        kind = ref.get("kind", "")
        if kind != "Secret":
            raise errors.bad_request(f"cannot bind token to object of kind {kind!r}: only Secret is served")
        secret = await self.server.registry("", "v1", "secrets").get(namespace, ref.get("name", ""))
        uid = secret["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict("secrets", ref.get("name", ""), "",
                                  f"the UID in the bound object reference ({ref['uid']}) does not match the "
                                  f"UID in record. The object might have been deleted and then recreated")
        return {"kind": "Secret", "name": ref.get("name", ""), "uid": uid}


def _jwt_audiences(token: str) -> list[str] | None:
    """The aud claim of a JWT (unverified; only called after verification succeeded), None otherwise."""
    try:
        claims = json.loads(jwt.api_jws.PyJWS().decode(token, options={"verify_signature": False}))
    except (jwt.InvalidTokenError, ValueError):
        return None
    if not isinstance(claims, dict) or "kubernetes.io" not in claims:
        return None
    aud = claims.get("aud") or []
    return [aud] if isinstance(aud, str) else list(aud)

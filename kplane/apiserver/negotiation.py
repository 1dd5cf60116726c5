"""Content negotiation: request bodies in, response media types out."""

from __future__ import annotations

import dataclasses
import functools
import gzip
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import hdrs

from kplane.apimachinery import errors, protobuf

MAX_BODY_BYTES = 3 * 1024 * 1024  # upstream's 3 MiB request body limit

JSON = "application/json"
AGGREGATED_DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass(frozen=True)
class MediaChoice:
    """What the client asked the response to be."""

    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList", "APIGroupDiscoveryList"
    yaml: bool = False
    # The version of as_kind: "v1" or "v1beta1" for the meta.k8s.io kinds (upstream still serves
    # both); for APIGroupDiscoveryList "v2", or "v2beta1" (the same document, still served in 1.32).
    as_version: str = ""
    # Indented JSON (upstream's PrettySerializer): `pretty=1` in the Accept clause, or the request's
    # `?pretty=` / User-Agent (negotiate). YAML has no pretty form; watch streams never use it.
    pretty: bool = False

    @property
    def meta_api_version(self) -> str:
        """apiVersion of the meta.k8s.io kind asked for (Table, PartialObjectMetadata[List])."""
        return f"meta.k8s.io/{self.as_version or 'v1'}"


# The media ranges of an Accept clause this server can answer (JSON or YAML).
_SERVED = frozenset(("application/json", "*/*", "application/*", "application/yaml"))


def _clauses(accept: str) -> list[tuple[str, dict[str, str]]]:
    """An Accept header's clauses in the client's order: (lower-cased media range, parameters)."""
    out = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        params = {k.strip(): v.strip() for k, _, v in (f.partition("=") for f in fields[1:] if "=" in f)}
        out.append((fields[0].lower(), params))
    return out


@functools.lru_cache(maxsize=256)  # clients send the same few Accept headers over and over
def parse_accept(accept: str) -> MediaChoice:
    """Pick the first acceptable alternative, in the client's order, as upstream does.

    Protobuf is not served; a client that accepts only protobuf, or only conversions this
    server does not make, gets 406 (the error is raised, not cached).
    """
    if not accept:
        return MediaChoice()
    for mime, params in _clauses(accept):
        if mime in _SERVED:
            as_kind = params.get("as", "")
            yaml_wanted = mime == "application/yaml"
            pretty = params.get("pretty") == "1"  # acceptMediaTypeOptions: only "1"
            if as_kind:
                group, version = params.get("g", ""), params.get("v", "")
                # Upstream's AllowsMediaTypeTransform: a Table in JSON or YAML, PartialObjectMetadata[List]
                # in any serialization, each of meta.k8s.io v1 or v1beta1 (answered in that version).
                if as_kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList") and \
                        group == "meta.k8s.io" and version in ("v1", "v1beta1"):
                    return MediaChoice(as_kind, yaml=yaml_wanted, as_version=version, pretty=pretty)
                if as_kind == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io" and \
                        version in ("v2", "v2beta1"):
                    return MediaChoice(as_kind, as_version=version, pretty=pretty)
                continue  # an "as" we do not serve: try the next alternative
            return MediaChoice(yaml=yaml_wanted, pretty=pretty)
    # Nothing acceptable: only protobuf, or only conversions this server does not make (as=Foo, a
    # Table of v2, ...). Upstream's 406 lists the endpoint's serializers either way
    # (NewNotAcceptableError(MediaTypesForSerializer)), not the conversions.
    raise errors.not_acceptable("only the following media types are accepted: application/json, "
                                "application/yaml")


# strconv.ParseBool's spellings of true; any other non-empty value (false, yes, ...) is false.
_PARSE_BOOL_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
# The User-Agent prefixes upstream takes for a human (browsers and command-line HTTP tools).
_PRETTY_AGENTS = ("curl", "Wget", "Mozilla/5.0")
COMPACT = MediaChoice()  # JSON as the encoder writes it
PRETTY = MediaChoice(pretty=True)  # indented JSON, for answers that are always JSON (discovery, Status)


@functools.lru_cache(maxsize=64)
def _prettied(choice: MediaChoice) -> MediaChoice:
    return dataclasses.replace(choice, pretty=True)


def _pretty_by_request(request: Any, choice: MediaChoice) -> MediaChoice:
    """`choice`, indented when upstream's isPrettyPrint says so (see negotiate)."""
    if choice.pretty:
        return choice
    value = request.query.get("pretty")
    if value:
        return _prettied(choice) if value in _PARSE_BOOL_TRUE else choice
    return _prettied(choice) if request.headers.get(hdrs.USER_AGENT, "").startswith(_PRETTY_AGENTS) else choice


def negotiate(request: Any) -> MediaChoice:
    """The answer's media type for `request`: parse_accept, made pretty (indented JSON) as upstream's
    NegotiateOutputMediaType does (`mediaType.Pretty || isPrettyPrint(req)`). isPrettyPrint: a
    non-empty `?pretty=` decides (strconv.ParseBool: pretty=1 or true; an unparsable value is
    false), else a User-Agent starting with curl, Wget or Mozilla/5.0. Costs the clients that ask
    for none of it a query and a header lookup beside the cached parse."""
    return _pretty_by_request(request, parse_accept(request.headers.get(hdrs.ACCEPT, "")))


@functools.lru_cache(maxsize=256)
def _error_accept(accept: str) -> MediaChoice | None:
    """The serializer a Status error is written with for this Accept header, as upstream's
    ErrorNegotiated → WriteObjectNegotiated negotiates it: with the default endpoint restrictions,
    which allow no conversion, so a clause with `as=` is passed over. None when nothing is left
    (only protobuf, only conversions): the Status is then written raw (WriteRawJSON)."""
    if not accept:
        return MediaChoice()
    for mime, params in _clauses(accept):
        if mime in _SERVED and "as" not in params:
            return MediaChoice(yaml=mime == "application/yaml", pretty=params.get("pretty") == "1")
    return None


def error_choice(request: Any) -> MediaChoice | None:
    """How a Status error answering `request` is written: JSON, indented JSON or YAML, negotiated
    from the Accept header as upstream does for errors (a client asking for YAML gets its Status
    in YAML); None for upstream's WriteRawJSON fallback (indented JSON) when the Accept header
    cannot be met."""
    choice = _error_accept(request.headers.get(hdrs.ACCEPT, ""))
    return None if choice is None else _pretty_by_request(request, choice)


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a JSON, YAML or Kubernetes protobuf request body; malformed input is a 400."""
    if len(body) > MAX_BODY_BYTES:
        raise errors.too_large()
    mime = content_type.split(";")[0].strip().lower()
    if mime in ("", "application/json", "application/merge-patch+json", "application/json-patch+json",
                "application/strategic-merge-patch+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.bad_request(f"error decoding request body: {e}") from None
    if mime == protobuf.MEDIA_TYPE:
        return protobuf.decode_k8s_protobuf(body)
    if mime in ("application/yaml", "application/apply-patch+yaml", "text/yaml"):
        try:
            return load_yaml(body)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from None
        except RecursionError:
            raise errors.bad_request("error decoding YAML: yaml: exceeded max depth") from None
    raise errors.unsupported_media_type(content_type)


class ExcessiveAliasing(yaml.YAMLError):
    def __str__(self) -> str:
        return "yaml: document contains excessive aliasing"


def _allowed_alias_ratio(decode_count: int) -> float:
    # go-yaml's allowedAliasRatio: 99% of the decode operations may come from alias expansion up to
    # 400,000 operations, scaling down to 10% at 4,000,000.
    low, high = 400_000, 4_000_000
    if decode_count <= low:
        return 0.99
    if decode_count >= high:
        return 0.10
    return 0.99 - 0.89 * (decode_count - low) / (high - low)


def _check_aliasing(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it out of proportion ("billion laughs"), counting as
    go-yaml's decoder does (every node decoded, and those decoded through an alias), before anything
    builds the expanded value. A node met a second time is an alias use; so is all beneath it."""
    decode_count = alias_count = 0
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, in_alias = stack.pop()
        if id(node) in seen:  # the alias node itself is decoded too, then its target within the alias
            decode_count += 1
            alias_count += in_alias
            in_alias = True
        seen.add(id(node))
        decode_count += 1
        alias_count += in_alias
        if (alias_count > 100 and decode_count > 1000
                and alias_count / decode_count > _allowed_alias_ratio(decode_count)):
            raise ExcessiveAliasing()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, in_alias) for item in reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.append((value, in_alias))
                stack.append((key, in_alias))


def load_yaml(body: bytes | str) -> Any:
    """yaml.safe_load, refusing excessive aliasing as go-yaml (sigs.k8s.io/yaml) does."""
    loader = yaml.SafeLoader(body)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliasing(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


# kube-apiserver's APIResponseCompression (on by default): answers above 128 KiB are gzipped, at
# level 1, for a client that accepts gzip (client-go does, through Go's transport).
GZIP_THRESHOLD = 128 * 1024
GZIP_LEVEL = 1


def compress_if_large(request_headers: Any, resp: Any) -> None:
    """Gzip a fixed-body web.Response in place when it is large and the client takes gzip."""
    body = getattr(resp, "body", None)
    if (not isinstance(body, bytes) or len(body) < GZIP_THRESHOLD or "Content-Encoding" in resp.headers
            or "gzip" not in request_headers.get("Accept-Encoding", "").lower()):
        return
    resp.body = gzip.compress(body, compresslevel=GZIP_LEVEL)
    resp.headers["Content-Encoding"] = "gzip"
    vary = resp.headers.get("Vary")
    resp.headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"


def encode(obj: Any, choice: MediaChoice | None = None) -> tuple[bytes, str]:
    """An API answer's body: JSON as upstream's serializer writes it (json.Encoder, so a trailing
    newline: objects, lists, Status errors, discovery, Tables); indented when pretty (its
    PrettySerializer: json.MarshalIndent, two spaces, no trailing newline); or YAML (which ends
    with a newline, and has no pretty form; its keys sorted, as sigs.k8s.io/yaml's JSONToYAML
    writes them through go-yaml's maps)."""
    if choice is not None:
        if choice.yaml:
            return yaml.safe_dump(obj, sort_keys=True).encode(), "application/yaml"
        if choice.pretty:
            return go_escaped(orjson.dumps(obj, option=orjson.OPT_INDENT_2)), JSON
    return go_escaped(orjson.dumps(obj) + b"\n"), JSON


# Go's encoding/json, which upstream's serializer is, writes <, > and & in strings as \u003c,
# \u003e and \u0026, and the line and paragraph separators U+2028 and U+2029 as \u2028 and
# \u2029; orjson writes them as they are. In JSON text all of them can only be inside strings
# (and UTF-8 never contains one as part of another character), so replacing them in the encoded
# bytes is exact.
_GO_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
               ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def go_escaped(data: bytes) -> bytes:
    """Encoded JSON with the escapes Go's encoder adds (HTML characters, line separators)."""
    for raw, escaped in _GO_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def encode_raw(obj: Any) -> bytes:
    """What upstream's responsewriters.WriteRawJSON writes (json.MarshalIndent: two-space indent,
    no trailing newline): /version, the / path index, and a Status no serializer was negotiated for.
    The same bytes as the pretty serializer's."""
    return encode(obj, PRETTY)[0]

"""JSON patch, JSON merge patch (RFC 7386) and strategic merge patch."""

from __future__ import annotations

import copy
import time

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apimachinery.patch import (
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    compute_merge_patch,
    sub_schema,
)

# A trimmed Pod/Deployment schema with the x-kubernetes-* markers of the real OpenAPI.
_PORTS = {"type": "array", "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
          "x-kubernetes-patch-merge-key": "containerPort", "x-kubernetes-patch-strategy": "merge",
          "items": {"type": "object", "properties": {"containerPort": {"type": "integer"},
                                                     "protocol": {"type": "string"},
                                                     "name": {"type": "string"}}}}
_CONTAINER = {"type": "object", "properties": {
    "name": {"type": "string"}, "image": {"type": "string"},
    "args": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
    "ports": _PORTS}}
SCHEMA = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
    "containers": {"type": "array", "items": _CONTAINER, "x-kubernetes-list-type": "map",
                   "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-patch-merge-key": "name",
                   "x-kubernetes-patch-strategy": "merge"},
    "tolerations": {"type": "array", "items": {"type": "object"}},
    "strategy": {"type": "object", "x-kubernetes-patch-strategy": "retainKeys", "properties": {
        "type": {"type": "string"},
        "rollingUpdate": {"type": "object", "properties": {"maxSurge": {"type": "integer"}}}}},
    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
}}}}


def pod(*containers: dict, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": list(containers), **spec}}


# --------------------------------------------------------------------------- JSON patch


def test_json_patch_applies_operations_in_order_without_touching_input():
    obj = {"metadata": {"name": "a"}, "data": {"x": "1"}, "list": [1, 2]}
    before = copy.deepcopy(obj)
    out = apply_json_patch(obj, b'[{"op":"add","path":"/data/y","value":"2"},'
                                b'{"op":"replace","path":"/data/x","value":"9"},'
                                b'{"op":"remove","path":"/list/0"},'
                                b'{"op":"test","path":"/data/y","value":"2"},'
                                b'{"op":"copy","from":"/data/y","path":"/data/z"}]')
    assert out == {"metadata": {"name": "a"}, "data": {"x": "9", "y": "2", "z": "2"}, "list": [2]}
    assert obj == before


def test_json_patch_failed_test_is_422_with_upstream_shape():
    with pytest.raises(StatusError) as e:
        apply_json_patch({"data": {"a": "1"}}, [{"op": "test", "path": "/data/a", "value": "2"}])
    assert e.value.to_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid", "code": 422,
        "details": {"causes": [{"reason": "UnexpectedServerResponse",
                                "message": "testing value /data/a failed: test failed"}]}}


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/data/missing"}],
    [{"op": "replace", "path": "/nope", "value": 1}],
    [{"op": "add", "path": "/a/b/c", "value": 1}],
    [{"op": "frobnicate", "path": "/data"}],
])
def test_json_patch_that_does_not_apply_is_422(ops):
    with pytest.raises(StatusError) as e:
        apply_json_patch({"data": {}}, ops)
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.details["causes"][0]["message"].startswith(f"{ops[0]['op']} operation does not apply: ")


@pytest.mark.parametrize("body", [b"{not json", b'{"op": "add"}', b'["add"]'])
def test_malformed_json_patch_body_is_400(body):
    with pytest.raises(StatusError) as e:
        apply_json_patch({}, body)
    assert (e.value.code, e.value.reason) == (400, "BadRequest")


def test_json_patch_operation_limit_is_413():
    with pytest.raises(StatusError) as e:
        apply_json_patch({}, [{"op": "test", "path": "", "value": {}}] * 10001)
    assert e.value.code == 413
    assert e.value.message == "The allowed maximum operations in a JSON patch is 10000, got 10001"


def test_json_patch_copies_are_limited_to_3_mib_in_all():
    # Each copy doubles /spec: 40 of them would be 2**40 times its size.
    obj = {"spec": {"a": "x" * 1000}}
    ops = [{"op": "copy", "from": "/spec", "path": f"/spec/n{i}"} for i in range(40)]
    started = time.monotonic()
    with pytest.raises(StatusError) as e:
        apply_json_patch(obj, ops)
    assert time.monotonic() - started < 5
    assert e.value.code == 422
    [cause] = e.value.details["causes"]
    assert cause["message"].startswith("Unable to complete the copy, the accumulated size increase of copy is ")
    assert cause["message"].endswith(", exceeding the limit 3145728")
    # Copies adding up to less pass, and measure the copied JSON.
    out = apply_json_patch(obj, [{"op": "copy", "from": "/spec", "path": "/spec/n"}] * 3)
    assert out["spec"]["n"]["n"]["n"] == {"a": "x" * 1000}


def test_json_patch_many_operations_on_a_large_object_stay_cheap():
    obj = {"data": {f"k{i}": str(i) for i in range(20000)}}
    started = time.monotonic()
    out = apply_json_patch(obj, [{"op": "test", "path": "/data/k1", "value": "1"}] * 9999
                           + [{"op": "remove", "path": "/data/k2"}])
    assert time.monotonic() - started < 5
    assert "k2" not in out["data"] and "k2" in obj["data"]


# --------------------------------------------------------------------------- merge patch

# RFC 7386 appendix A, each case nested under "x" so that non-object documents fit in an object.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,result", RFC7386)
def test_merge_patch_rfc7386_examples(target, patch, result):
    assert apply_merge_patch({"x": target, "keep": 1}, {"x": patch}) == {"x": result, "keep": 1}


def test_merge_patch_null_at_top_level_deletes_the_field():
    assert apply_merge_patch({"x": {"a": "foo"}, "y": 1}, {"x": None}) == {"y": 1}


def test_merge_patch_must_be_an_object():
    with pytest.raises(StatusError) as e:
        apply_merge_patch({"a": 1}, ["c"])
    assert e.value.code == 400


def test_compute_merge_patch_round_trips():
    original = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "f": True}
    modified = {"a": 1, "b": {"c": 5}, "e": [1, 2], "g": None, "f": 1}
    patch = compute_merge_patch(original, modified)
    # true and 1 differ in JSON even though Python says True == 1.
    assert patch == {"b": {"c": 5, "d": None}, "e": [1, 2], "g": None, "f": 1}
    assert compute_merge_patch(original, copy.deepcopy(original)) == {}


# --------------------------------------------------------------------------- strategic merge patch


def smp(obj: dict, patch: dict, schema: dict | None = SCHEMA) -> dict:
    return apply_strategic_merge_patch(obj, patch, schema)


def test_containers_merge_by_name_and_new_ones_are_appended():
    live = pod({"name": "nginx", "image": "nginx:1"}, {"name": "log", "image": "busybox"})
    out = smp(live, {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"},
                                             {"name": "redis", "image": "redis"}]}})
    assert out["spec"]["containers"] == [{"name": "nginx", "image": "nginx:2"},
                                         {"name": "log", "image": "busybox"},
                                         {"name": "redis", "image": "redis"}]
    assert live["spec"]["containers"][0]["image"] == "nginx:1"  # input untouched


def test_nested_merge_list_ports_by_containerport():
    live = pod({"name": "web", "ports": [{"containerPort": 80, "name": "http"}]})
    out = smp(live, {"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "web"},
                                                                       {"containerPort": 443}]}]}})
    assert out["spec"]["containers"] == [{"name": "web", "ports": [{"containerPort": 80, "name": "web"},
                                                                   {"containerPort": 443}]}]


def test_patch_delete_directive_removes_list_item():
    live = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    out = smp(live, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}})
    assert out["spec"]["containers"] == [{"name": "a"}, {"name": "c"}]


def test_patch_replace_directive_in_list_replaces_whole_list():
    live = pod({"name": "a", "image": "x"}, {"name": "b"})
    out = smp(live, {"spec": {"containers": [{"name": "z", "image": "new"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "z", "image": "new"}]


def test_map_directives_replace_and_delete():
    live = pod({"name": "a"}, nodeSelector={"disk": "ssd", "zone": "a"})
    replaced = smp(live, {"spec": {"nodeSelector": {"$patch": "replace", "zone": "b"}}})
    assert replaced["spec"]["nodeSelector"] == {"zone": "b"}
    deleted = smp(live, {"spec": {"nodeSelector": {"$patch": "delete"}}})
    assert deleted["spec"]["nodeSelector"] == {}  # upstream empties the map


def test_unknown_map_directive_is_400():
    with pytest.raises(StatusError) as e:
        smp(pod(), {"spec": {"$patch": "merge"}})
    assert e.value.code == 400
    assert e.value.message.startswith("unknown patch type: merge in map: ")


def test_null_deletes_field_and_non_merge_lists_are_replaced():
    live = pod({"name": "a", "image": "x", "args": ["1", "2"]}, tolerations=[{"key": "k1"}])
    out = smp(live, {"spec": {"tolerations": [{"key": "k2"}],
                              "containers": [{"name": "a", "image": None, "args": ["3"]}]}})
    assert out["spec"] == {"containers": [{"name": "a", "args": ["3"]}], "tolerations": [{"key": "k2"}]}


def test_primitive_merge_list_union_and_delete_from_primitive_list():
    live = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    assert smp(live, {"metadata": {"finalizers": ["b", "c"]}})["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_owner_references_merge_by_uid_even_without_metadata_in_schema():
    live = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}
    out = smp(live, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}, schema=None)
    assert out["metadata"]["ownerReferences"] == [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]


def test_retain_keys_clears_unlisted_fields():
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = smp(live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out == {"spec": {"strategy": {"type": "Recreate"}}}


def test_retain_keys_must_list_every_patched_field():
    with pytest.raises(StatusError) as e:
        smp({"spec": {"strategy": {}}}, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}})
    assert (e.value.code, e.value.message) == (400, "invalid patch format of retainKeys")


def test_set_element_order_orders_the_merged_list():
    live = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    out = smp(live, {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                              "containers": [{"name": "c", "image": "x"}]}})
    assert out["spec"]["containers"] == [{"name": "c", "image": "x"}, {"name": "a"}, {"name": "b"}]


def test_set_element_order_keeps_server_only_items_in_place():
    live = pod({"name": "a"}, {"name": "s"}, {"name": "b"})
    out = smp(live, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["s", "b", "a"]


def test_directives_do_not_leak_into_new_fields():
    out = smp({"spec": {}}, {"spec": {"containers": [{"name": "a"}, {"name": "gone", "$patch": "delete"}]}})
    assert out == {"spec": {"containers": [{"name": "a"}]}}


def test_merge_list_item_without_merge_key_is_400():
    with pytest.raises(StatusError) as e:
        smp(pod({"name": "a"}), {"spec": {"containers": [{"image": "x"}]}})
    assert e.value.code == 400
    assert e.value.message == 'map: {"image":"x"} does not contain declared merge key: name'


def test_without_schema_maps_merge_and_lists_replace():
    live = {"spec": {"items": [{"name": "a"}], "m": {"x": 1, "y": 2}}}
    out = smp(live, {"spec": {"items": [{"name": "b"}], "m": {"y": None, "z": 3}}}, schema=None)
    assert out == {"spec": {"items": [{"name": "b"}], "m": {"x": 1, "z": 3}}}


def test_sub_schema_steps_through_array_items_and_tolerates_unknown_paths():
    assert sub_schema(SCHEMA, ["spec", "containers", "ports"]) is _PORTS
    assert sub_schema(SCHEMA, ["spec", "nodeSelector", "anything"]) == {"type": "string"}
    assert sub_schema(SCHEMA, ["spec", "nope", "deeper"]) is None
    assert sub_schema(None, ["spec"]) is None

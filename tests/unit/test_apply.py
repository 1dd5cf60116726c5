"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy

import pytest

from kplane.apimachinery.apply import (
    fields_of,
    from_fields_v1,
    path_string,
    server_side_apply,
    to_fields_v1,
    update_managed_fields,
)
from kplane.apimachinery.errors import StatusError

T1, T2, T3 = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"

CM_SCHEMA = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
    "data": {"type": "object", "additionalProperties": {"type": "string"}}}}

_PORTS = {"type": "array", "x-kubernetes-list-type": "map",
          "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
          "x-kubernetes-patch-merge-key": "containerPort", "x-kubernetes-patch-strategy": "merge",
          "items": {"type": "object", "properties": {"containerPort": {"type": "integer"},
                                                     "protocol": {"type": "string"},
                                                     "name": {"type": "string"}}}}
POD_SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "containers": {"type": "array", "x-kubernetes-patch-merge-key": "name",
                       "x-kubernetes-patch-strategy": "merge",
                       "items": {"type": "object", "properties": {
                           "name": {"type": "string"}, "image": {"type": "string"},
                           "args": {"type": "array", "items": {"type": "string"}},
                           "ports": _PORTS}}},
    }},
    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}


def cm(data: dict | None = None, **meta: object) -> dict:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default", **meta}}
    if data is not None:
        obj["data"] = data
    return obj


def created(obj: dict, manager: str = "kubectl-create", schema: dict = CM_SCHEMA) -> dict:
    """An object as a create by `manager` stores it."""
    new = copy.deepcopy(obj)
    new["metadata"].update(uid="u1", resourceVersion="1", creationTimestamp=T1)
    update_managed_fields(None, new, manager=manager, api_version="v1", now=T1, schema=schema)
    return new


def apply(live: dict | None, config: dict, manager: str = "mgr", force: bool = False,
          schema: dict = CM_SCHEMA, now: str = T2, **kw: object) -> dict:
    return server_side_apply(live, config, manager=manager, force=force, schema=schema, api_version="v1",
                             now=now, **kw)


def entries(obj: dict) -> list[tuple[str, str, dict]]:
    return [(e["manager"], e["operation"], e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])]


# --------------------------------------------------------------------------- field sets and FieldsV1


def test_fields_v1_encoding_of_list_maps_and_declared_fields():
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
         "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                  "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}
    paths = fields_of(p, POD_SCHEMA)
    assert to_fields_v1(paths) == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
            ".": {}, "f:image": {}, "f:name": {},
            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}
    assert from_fields_v1(to_fields_v1(paths)) == paths


def test_sets_and_undeclared_maps_are_members():
    obj = {"metadata": {"finalizers": ["b", "a"]}, "extra": {"x": {"y": 1}}}
    assert to_fields_v1(fields_of(obj, {"type": "object", "x-kubernetes-preserve-unknown-fields": True})) == {
        "f:extra": {".": {}, "f:x": {".": {}, "f:y": {}}},
        "f:metadata": {"f:finalizers": {'v:"a"': {}, 'v:"b"': {}}}}


def test_fields_of_skips_server_metadata_and_ignored_fields():
    obj = cm({"a": "1"}, uid="u", resourceVersion="5", generation=2, creationTimestamp=T1)
    obj["status"] = {"phase": "x"}
    assert fields_of(obj, POD_SCHEMA | {"properties": {**POD_SCHEMA["properties"], **CM_SCHEMA["properties"]}},
                     ignored_fields=[("status",)]) == {("f:data", "f:a")}


@pytest.mark.parametrize("path,text", [
    (("f:data", "f:a"), ".data.a"),
    (("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"), '.spec.containers[name="c"].image'),
    (("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'), '.ports[containerPort=80,protocol="TCP"]'),
    (("f:metadata", "f:finalizers", 'v:"x"'), '.metadata.finalizers[="x"]'),
])
def test_path_string_matches_upstream(path, text):
    assert path_string(path) == text


# --------------------------------------------------------------------------- update bookkeeping


def test_create_records_an_update_entry_with_dot_for_new_maps():
    obj = created(cm({"a": "1"}, labels={"app": "x"}))
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]


@pytest.mark.parametrize("obj, schema", [
    (cm({"a": "1", "b": ""}, labels={"app": "x"}, annotations={}, finalizers=["f", "g", "f"]), CM_SCHEMA),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u", "generation": 2},
      "spec": {"containers": [{"name": "a", "image": "i", "args": ["x"],
                               "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80},
                                         {"containerPort": 80, "protocol": "TCP", "name": "dup"}]},
                              {"image": "no-name"}, {"name": "a"}]},
      "status": {"phase": None}, "extra": {"x": [1, {"y": True}]}}, POD_SCHEMA),
    ({"apiVersion": "v1", "kind": "X", "metadata": {"name": {"odd": 1}, "uid": {"a": {}}}, "spec": {}}, None),
    ({"apiVersion": "v1", "kind": "X", "metadata": {}}, None),
])
def test_create_entry_is_the_diff_against_nothing(obj, schema):
    """A create's entry is rendered straight from the object; it must equal what diffing the
    object against an empty one records (the path every other write takes)."""
    from kplane.apimachinery.apply import _Entry, _record_update, _set_managed_fields

    fast = copy.deepcopy(obj)
    update_managed_fields(None, fast, manager="m", api_version="v1", now=T1, schema=schema)
    managers: dict = {}
    _record_update(managers, {}, obj, _Entry("m", "Update", "v1", set(), T1), schema, [])
    generic = copy.deepcopy(obj)
    _set_managed_fields(generic, managers)
    assert fast == generic


def test_update_moves_changed_fields_and_drops_emptied_entries():
    old = created(cm({"a": "1", "b": "2"}))
    new = copy.deepcopy(old)
    new["data"] = {"a": "1", "b": "3"}
    update_managed_fields(old, new, manager="kubectl-edit", api_version="v1", now=T2, schema=CM_SCHEMA)
    assert entries(new) == [("kubectl-create", "Update", {"f:data": {".": {}, "f:a": {}}}),
                            ("kubectl-edit", "Update", {"f:data": {"f:b": {}}})]
    newer = copy.deepcopy(new)
    newer["data"] = {"b": "4"}  # removes a; the creator still owns the data map itself
    update_managed_fields(new, newer, manager="kubectl-edit", api_version="v1", now=T3, schema=CM_SCHEMA)
    assert entries(newer) == [("kubectl-create", "Update", {"f:data": {}}),
                              ("kubectl-edit", "Update", {"f:data": {"f:b": {}}})]
    assert newer["metadata"]["managedFields"][1]["time"] == T3
    newest = copy.deepcopy(newer)
    del newest["data"]
    update_managed_fields(newer, newest, manager="kubectl-edit", api_version="v1", now=T3, schema=CM_SCHEMA)
    assert "managedFields" not in newest["metadata"]


def test_noop_update_leaves_entries_alone():
    old = created(cm({"a": "1"}))
    new = copy.deepcopy(old)
    update_managed_fields(old, new, manager="other", api_version="v1", now=T2, schema=CM_SCHEMA)
    assert new["metadata"]["managedFields"] == old["metadata"]["managedFields"]


def test_client_can_clear_managed_fields_with_a_single_empty_entry():
    old = created(cm({"a": "1"}))
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]
    update_managed_fields(old, new, manager="kubectl-edit", api_version="v1", now=T2, schema=CM_SCHEMA)
    assert "managedFields" not in new["metadata"]


def test_untracked_objects_stay_untracked_on_update():
    old = cm({"a": "1"})
    new = cm({"a": "2"})
    update_managed_fields(old, new, manager="kubectl-edit", api_version="v1", now=T2, schema=CM_SCHEMA)
    assert "managedFields" not in new["metadata"]


# --------------------------------------------------------------------------- server-side apply


def test_apply_creates_with_an_apply_entry():
    out = apply(None, cm({"a": "1"}))
    assert out["data"] == {"a": "1"}
    assert out["metadata"]["managedFields"] == [{
        "manager": "mgr", "operation": "Apply", "apiVersion": "v1", "time": T2, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}}}}]


def test_conflict_with_another_manager_is_409_with_upstream_message():
    live = created(cm({"a": "1"}), manager="kubectl-client-side-apply")
    with pytest.raises(StatusError) as e:
        apply(live, cm({"a": "2"}))
    assert e.value.to_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.a',
        "reason": "Conflict", "code": 409,
        "details": {"causes": [{"reason": "FieldManagerConflict",
                                "message": 'conflict with "kubectl-client-side-apply" using v1',
                                "field": ".data.a"}]}}


def test_several_conflicts_are_grouped_by_manager():
    live = apply(created(cm({"a": "1"}), manager="editor"), cm({"b": "1"}), manager="applier")
    with pytest.raises(StatusError) as e:
        apply(live, cm({"a": "2", "b": "2"}), manager="third")
    assert e.value.message == ('Apply failed with 2 conflicts: conflicts with "applier":\n- .data.b\n'
                               'conflicts with "editor" using v1:\n- .data.a')
    assert [c["message"] for c in e.value.details["causes"]] == ['conflict with "applier"',
                                                                 'conflict with "editor" using v1']


def test_applying_the_same_value_shares_ownership():
    live = created(cm({"a": "1"}))
    out = apply(live, cm({"a": "1"}))
    assert entries(out) == [("mgr", "Apply", {"f:data": {"f:a": {}}}),
                            ("kubectl-create", "Update", {"f:data": {".": {}, "f:a": {}}})]
    # Nothing changed, so the new applier gets no timestamp.
    assert "time" not in out["metadata"]["managedFields"][0]


def test_force_takes_ownership():
    live = created(cm({"a": "1", "b": "1"}))
    out = apply(live, cm({"a": "2"}), force=True)
    assert out["data"] == {"a": "2", "b": "1"}
    assert entries(out) == [("mgr", "Apply", {"f:data": {"f:a": {}}}),
                            ("kubectl-create", "Update", {"f:data": {".": {}, "f:b": {}}})]


def test_field_the_applier_stops_applying_is_removed():
    live = apply(None, cm({"a": "1", "b": "1"}))
    out = apply(live, cm({"a": "1"}), now=T3)
    assert out["data"] == {"a": "1"}
    assert entries(out) == [("mgr", "Apply", {"f:data": {"f:a": {}}})]
    assert out["metadata"]["managedFields"][0]["time"] == T3


def test_field_co_owned_by_another_applier_survives():
    live = apply(None, cm({"a": "1", "b": "1"}))
    live = apply(live, cm({"b": "1"}), manager="other")
    out = apply(live, cm({"a": "1"}), now=T3)
    assert out["data"] == {"a": "1", "b": "1"}
    # Same operation: ordered by time, the older entry first.
    assert entries(out) == [("other", "Apply", {"f:data": {"f:b": {}}}),
                            ("mgr", "Apply", {"f:data": {"f:a": {}}})]


def test_dropping_the_whole_map_removes_it():
    live = apply(None, cm({"a": "1"}, labels={"x": "y"}))
    out = apply(live, cm(labels={"x": "y"}), now=T3)
    assert "data" not in out


def test_list_map_merges_ports_by_container_port_and_protocol():
    def pod(*ports: dict) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "web", "ports": list(ports)}]}}

    live = apply(None, pod({"containerPort": 80, "protocol": "TCP"}), manager="a", schema=POD_SCHEMA)
    out = apply(live, pod({"containerPort": 53, "protocol": "UDP"}), manager="b", schema=POD_SCHEMA)
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                                                     {"containerPort": 53, "protocol": "UDP"}]
    b_fields = out["metadata"]["managedFields"][1]["fieldsV1"]
    assert b_fields == {"f:spec": {"f:containers": {'k:{"name":"web"}': {
        ".": {}, "f:name": {},
        "f:ports": {'k:{"containerPort":53,"protocol":"UDP"}': {
            ".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}
    # Same port number, other protocol: a different item, so no conflict either.
    out = apply(out, pod({"containerPort": 80, "protocol": "UDP", "name": "x"}), manager="c", schema=POD_SCHEMA)
    assert len(out["spec"]["containers"][0]["ports"]) == 3


def test_list_map_item_dropped_by_its_only_applier_is_removed():
    def pod(*names: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": n, "image": n} for n in names]}}

    live = apply(None, pod("a", "b"), schema=POD_SCHEMA)
    out = apply(live, pod("b"), schema=POD_SCHEMA, now=T3)
    assert out["spec"]["containers"] == [{"name": "b", "image": "b"}]


def test_conflict_path_inside_list_map_item():
    live = apply(None, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                        "spec": {"containers": [{"name": "c", "image": "1"}]}}, manager="a", schema=POD_SCHEMA)
    with pytest.raises(StatusError) as e:
        apply(live, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "2"}]}}, manager="b", schema=POD_SCHEMA)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "a": .spec.containers[name="c"].image'


def test_first_apply_to_untracked_object_conflicts_with_before_first_apply():
    live = cm({"a": "1"}, uid="u1")
    with pytest.raises(StatusError) as e:
        apply(live, cm({"a": "2"}))
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.a'


def test_ignored_status_is_neither_merged_nor_owned():
    config = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
              "status": {"phase": "Running"}}
    out = apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"},
                 "status": {"phase": "Pending"}}, config, schema=POD_SCHEMA, ignored_fields=[("status",)])
    assert out["status"] == {"phase": "Pending"}
    # before-first-apply would own only status, which is ignored, so it has no entry.
    assert entries(out) == [("mgr", "Apply", {"f:metadata": {"f:labels": {"f:a": {}}}})]


@pytest.mark.parametrize("config,message", [
    ({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "c"}}, "invalid object type: /v2, Kind=ConfigMap"),
    ({"apiVersion": "v1", "metadata": {"name": "c"}}, "invalid object type: /v1, Kind="),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": []}},
     "metadata.managedFields must be nil"),
])
def test_bad_apply_configuration_is_400(config, message):
    with pytest.raises(StatusError) as e:
        apply(cm({}), config, kind="ConfigMap")
    assert (e.value.code, e.value.message) == (400, message)


def test_create_without_name_is_422_and_url_name_must_match():
    with pytest.raises(StatusError) as e:
        apply(None, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})
    assert (e.value.code, e.value.message) == (
        422, 'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required')
    with pytest.raises(StatusError) as e:
        apply(None, cm({}), name="other")
    assert e.value.message == "the name of the object (c) does not match the name on the URL (other)"


def test_duplicate_keys_in_applied_list_is_400():
    config = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
              "spec": {"containers": [{"name": "a"}, {"name": "a"}]}}
    with pytest.raises(StatusError) as e:
        apply(None, config, schema=POD_SCHEMA)
    assert e.value.code == 400
    assert e.value.message.endswith('duplicate entries for key [name="a"]')


def test_list_map_order_follows_applied_order_for_shared_items():
    schema = {"type": "object", "properties": {"items": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["n"]}}}
    base = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}}
    live = {**base, "items": [{"n": "a"}, {"n": "x"}, {"n": "b"}, {"n": "c"}]}
    config = {**base, "items": [{"n": "c"}, {"n": "a"}, {"n": "new"}]}
    before = copy.deepcopy((live, config))
    out = apply(live, config, schema=schema)
    assert [i["n"] for i in out["items"]] == ["x", "b", "c", "a", "new"]
    assert (live, config) == before  # inputs untouched


def test_more_than_ten_updaters_fold_into_ancient_changes():
    obj = created(cm({}), manager="m0")
    for i in range(1, 13):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        update_managed_fields(obj, new, manager=f"m{i}", api_version="v1", now=f"2024-05-02T00:00:{i:02d}Z",
                              schema=CM_SCHEMA)
        obj = new
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert managers == ["ancient-changes"] + [f"m{i}" for i in range(4, 13)]
    assert obj["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {".": {}, "f:k1": {}, "f:k2": {}, "f:k3": {}}}

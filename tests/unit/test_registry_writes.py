"""Registry writes over a real SQLiteStore and watch cache: the shortcuts of the write path
(the watch cache's object as the result, the cached state as an update's starting point)
give the store's answer, also when the cache is stale."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kplane.apimachinery import errors
from kplane.apiserver.registry import Registry, WriteOptions, decode_stored

KEY = "/registry/configmaps/default/cm"


def configmap(value: str, rv: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cm", "namespace": "default", "labels": {"app": "x"}}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": value}}


def opts(**kw: Any) -> WriteOptions:
    return WriteOptions(field_manager="test", **kw)


async def make_cache_stale(reg: Registry) -> str:
    """Stop the watch cache (it keeps what it had), then change the object behind its back."""
    await reg.cacher.stop()
    kv = await reg.store.get(KEY)
    assert kv is not None
    obj = decode_stored(kv)
    obj["data"]["k"] = "changed-behind"
    written = await reg.store.update(KEY, reg.encode(obj), expected_revision=kv.mod_revision)
    return str(written.mod_revision)


async def test_shared_result_is_the_cached_object_and_equals_a_decode(registry: Registry) -> None:
    created = await registry.create("default", configmap("a"), opts(shared_result=True))
    hit = registry.cacher.get(KEY)
    assert hit is not None and created is hit[1]
    kv = await registry.store.get(KEY)
    assert kv is not None and orjson.dumps(created) == orjson.dumps(decode_stored(kv))
    updated, _ = await registry.update("default", "cm", configmap("b"), opts(shared_result=True))
    hit = registry.cacher.get(KEY)
    assert hit is not None and updated is hit[1] and updated["data"] == {"k": "b"}


async def test_private_result_without_shared(registry: Registry) -> None:
    created = await registry.create("default", configmap("a"), opts())
    hit = registry.cacher.get(KEY)
    assert hit is not None and created is not hit[1] and created == hit[1]


async def test_update_with_the_stores_resource_version_succeeds_on_a_stale_cache(registry: Registry) -> None:
    await registry.create("default", configmap("a"), opts())
    current_rv = await make_cache_stale(registry)
    updated, created = await registry.update("default", "cm", configmap("b", current_rv), opts())
    assert not created and updated["data"] == {"k": "b"}
    assert int(updated["metadata"]["resourceVersion"]) > int(current_rv)


async def test_update_with_the_cached_resource_version_conflicts_on_a_stale_cache(registry: Registry) -> None:
    first = await registry.create("default", configmap("a"), opts())
    await make_cache_stale(registry)
    with pytest.raises(errors.StatusError) as e:
        await registry.update("default", "cm", configmap("b", first["metadata"]["resourceVersion"]), opts())
    assert e.value.code == 409


async def test_update_that_is_a_no_op_only_against_a_stale_cache_is_written(registry: Registry) -> None:
    await registry.create("default", configmap("a"), opts())
    current_rv = await make_cache_stale(registry)
    updated, _ = await registry.update("default", "cm", configmap("a"), opts())
    assert updated["data"] == {"k": "a"}
    assert int(updated["metadata"]["resourceVersion"]) > int(current_rv)
    kv = await registry.store.get(KEY)
    assert kv is not None and orjson.loads(kv.value)["data"] == {"k": "a"}


async def test_validation_error_from_a_current_cache_stands(registry: Registry) -> None:
    await registry.create("default", configmap("a"), opts())
    bad = configmap("a")
    bad["data"] = {"bad key!": "x"}
    with pytest.raises(errors.StatusError) as e:
        await registry.update("default", "cm", bad, opts())
    assert e.value.code == 422


async def test_update_of_an_object_deleted_behind_a_stale_cache_is_not_found(registry: Registry) -> None:
    await registry.create("default", configmap("a"), opts())
    await registry.cacher.stop()
    await registry.store.delete(KEY)
    with pytest.raises(errors.StatusError) as e:
        await registry.update("default", "cm", configmap("b"), opts())
    assert e.value.code == 404


async def test_empty_metadata_maps_and_lists_are_not_stored(registry: Registry) -> None:
    # Go's omitempty: kube-apiserver never writes back labels: {}, annotations: {}, finalizers: []
    # (kubectl diff sends annotations: {} and must not see it in the merged object).
    cm = configmap("a")
    cm["metadata"].update(labels={}, annotations={}, finalizers=[], ownerReferences=None)
    created = await registry.create("default", cm, opts())
    assert not {"labels", "annotations", "finalizers", "ownerReferences"} & set(created["metadata"])
    assert all(e["fieldsV1"].get("f:metadata") is None for e in created["metadata"]["managedFields"])

    update = configmap("b", created["metadata"]["resourceVersion"])
    update["metadata"]["annotations"] = {}
    updated, _ = await registry.update("default", "cm", update, opts())
    assert "annotations" not in updated["metadata"] and "labels" in updated["metadata"]
    stored = decode_stored(await registry.store.get(KEY))
    assert "annotations" not in stored["metadata"] and stored["metadata"]["labels"] == {"app": "x"}

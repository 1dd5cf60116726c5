"""Registry reads over a real SQLiteStore and watch cache: chunked lists across a compaction
(upstream's fresh continue token), and watches opened before any response is committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kplane.apimachinery import errors
from kplane.apiserver.registry import ListOptions, Registry, WriteOptions


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}


async def test_a_compacted_continue_hands_out_a_token_for_the_rest(registry: Registry) -> None:
    for i in range(5):
        await registry.create("default", configmap(f"c{i}"), WriteOptions(field_manager="t"))
    first = await registry.list("default", ListOptions(limit=2))
    assert [o["metadata"]["name"] for o in first.items] == ["c0", "c1"] and first.remaining == 3
    await registry.create("default", configmap("c5"), WriteOptions(field_manager="t"))
    await registry.store.compact(await registry.store.current_revision())
    with pytest.raises(errors.StatusError) as e:
        await registry.list("default", ListOptions(limit=2, continue_token=first.continue_token))
    status = e.value.to_status()
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith("The provided continue parameter is too old to display a consistent")
    # The token in the Status goes on after c1, at the latest revision (c5 included: inconsistent).
    rest = await registry.list("default", ListOptions(limit=10, continue_token=status["metadata"]["continue"]))
    assert [o["metadata"]["name"] for o in rest.items] == ["c2", "c3", "c4", "c5"]
    with pytest.raises(errors.StatusError) as e:
        await registry.list("default", ListOptions(resource_version=first.resource_version,
                                                   resource_version_match="Exact"))
    assert e.value.code == 410 and e.value.message == "The resourceVersion for the provided list is too old."


async def test_a_bad_resource_version_fails_when_the_watch_is_opened(registry: Registry) -> None:
    with pytest.raises(errors.StatusError) as e:
        await registry.open_watch("default", ListOptions(resource_version="abc"))
    assert e.value.code == 400


async def test_no_initial_events_without_a_resource_version_watches_from_now(registry: Registry) -> None:
    await registry.create("default", configmap("before"), WriteOptions(field_manager="t"))
    events = await registry.open_watch("default", ListOptions(), send_initial_events=False)
    await registry.create("default", configmap("after"), WriteOptions(field_manager="t"))
    ev = await asyncio.wait_for(events.__anext__(), 5)
    assert (ev.type, ev.object["metadata"]["name"]) == ("ADDED", "after")
    await events.aclose()


async def test_a_future_resource_version_is_too_large_before_anything_streams(registry: Registry) -> None:
    from kplane.storage.cacher import TooLargeResourceVersionError

    current = int((await registry.list("default", ListOptions())).resource_version)
    with pytest.raises(TooLargeResourceVersionError):
        await registry.open_watch("default", ListOptions(resource_version=str(current + 100)))
    with pytest.raises(TooLargeResourceVersionError):  # a limited list of it too (NotOlderThan)
        await registry.list("default", ListOptions(resource_version=str(current + 100), limit=1))

"""Fixtures the unit modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kplane.apiserver.registry import Registry, decode_stored
from kplane.controlplane.types import builtin_resources
from kplane.storage.cacher import Cacher
from kplane.storage.sqlite import SQLiteStore


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    """The ConfigMap registry over a real SQLiteStore and watch cache."""
    store = SQLiteStore(str(tmp_path / "kplane.db"))
    rdef = next(r for r in builtin_resources() if r.plural == "configmaps")
    cacher = Cacher(store, rdef.key_prefix(), decode_stored)
    await cacher.start()
    yield Registry(rdef, store, cacher)
    await cacher.stop()
    await store.close()

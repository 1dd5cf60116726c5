"""The Store protocol every storage backend implements.

Modelled on k8s.io/apiserver/pkg/storage.Interface, reduced to what a
key-value backend must provide. Revisions are one global, strictly increasing
integer per write: the resourceVersion. Values are opaque bytes (JSON objects
encoded by the registry, without metadata.resourceVersion, which is derived
from the revision when reading).

Guaranteed update (read, modify, write with retry) is built on `update` with
`expected_revision` by the layer above; the store only checks the precondition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


class StorageError(Exception):
    pass


class KeyExistsError(StorageError):
    def __init__(self, key: str):
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFoundError(StorageError):
    def __init__(self, key: str):
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionConflictError(StorageError):
    """The object's current mod_revision differs from the expected one."""

    def __init__(self, key: str, expected: int, actual: int):
        super().__init__(f"revision conflict on {key}: expected {expected}, actual {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class CompactedError(StorageError):
    """The requested revision is older than the compacted revision (HTTP 410)."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"required revision {requested} has been compacted (compacted revision {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StorageError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, requested: int, current: int):
        super().__init__(f"requested revision {requested} is newer than current revision {current}")
        self.requested = requested
        self.current = current


class StoreInUseError(StorageError):
    """Another process has the store open (two servers on one SQLite file would both write)."""

    def __init__(self, path: str):
        super().__init__(f"{path} is in use by another process")
        self.path = path


class StoreClosedError(StorageError):
    """Any operation on a store after close()."""

    def __init__(self) -> None:
        super().__init__("store is closed")


class UnavailableError(StorageError):
    """The backend cannot be reached (e.g. etcd down)."""


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    # For ADDED/MODIFIED: the new state. For DELETED: the last state before the
    # delete, with mod_revision set to the revision of the delete.
    kv: KV
    prev: KV | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Progress:
    """Watch item of the optional progress-notify extension: every event up to `revision`
    under the watched prefix has been yielded.

    A backend that supports it accepts `watch(prefix, rev, progress_notify=True)` and
    `request_progress()` (etcd's progress requests; the watch cache uses them so that
    waiting for a revision written under another prefix completes promptly)."""

    revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KV]  # sorted by key
    revision: int  # the revision the list was taken at
    more: bool  # True when `limit` cut the list short
    remaining: int = 0  # when `more`: how many keys the range holds after the returned ones


class Store(Protocol):
    async def get(self, key: str) -> KV | None: ...

    async def list(self, prefix: str, *, revision: int = 0, start_after: str | None = None,
                   limit: int = 0) -> ListResult:
        """Keys starting with `prefix`, sorted, strictly after `start_after`.

        revision=0 means the latest state; otherwise the state as of `revision`
        (CompactedError if older than the compacted revision, FutureRevisionError
        if newer than the current one). limit=0 means no limit.
        """
        ...

    async def create(self, key: str, value: bytes) -> KV:
        """KeyExistsError if the key exists."""
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KV:
        """KeyNotFoundError if absent, RevisionConflictError if mod_revision differs.

        expected_revision=0 skips the check (unconditional update of an existing key).
        """
        ...

    async def delete(self, key: str, *, expected_revision: int = 0) -> KV:
        """Returns the deleted KV with mod_revision = the revision of the delete."""
        ...

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Every event on keys under `prefix` with revision > from_revision, in order.

        from_revision=0 means "from now". Raises CompactedError (on first
        iteration) if from_revision is older than the compacted revision. The
        iterator ends when the store closes.
        """
        ...

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Forget history at or before `revision` (current values are kept)."""
        ...

    async def close(self) -> None: ...

"""A small async client for kplane's API (extension servers and controllers
talking to the main server). Users keep their own clients; this one only does
what kplane itself needs: JSON requests, Status errors, and idempotent upserts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson

from kplane.client.kubeconfig import KubeConfig, load_kubeconfig

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer; `status` is the decoded metav1.Status when there is one."""

    def __init__(self, code: int, status: Obj | None, text: str = ""):
        self.code = code
        self.status = status or {}
        self.reason = self.status.get("reason", "")
        super().__init__(self.status.get("message") or text or f"HTTP {code}")


def resource_path(api_version: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if sub:
        base += f"/{sub}"
    return base


class Client:
    def __init__(self, config: KubeConfig, *, timeout: float = 30.0):
        self.config = config
        self._ssl = config.ssl_context()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path, context: str | None = None, **kw: Any) -> Client:
        return cls(load_kubeconfig(path, context), **kw)

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": "kplane-client/0.1", "Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32), headers=headers, timeout=self._timeout,
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._sess().request(method, self.config.server + path, data=data, params=params,
                                        headers=headers) as resp:
            raw = await resp.read()
            try:
                decoded = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                decoded = None
            if resp.status >= 400:
                status = decoded if isinstance(decoded, dict) and decoded.get("kind") == "Status" else None
                raise ApiError(resp.status, status, raw.decode(errors="replace")[:500])
            return decoded

    # ---- conveniences ----------------------------------------------------

    async def get(self, api_version: str, plural: str, name: str, namespace: str = "") -> Obj:
        return await self.request("GET", resource_path(api_version, plural, namespace, name))

    async def get_or_none(self, api_version: str, plural: str, name: str, namespace: str = "") -> Obj | None:
        try:
            return await self.get(api_version, plural, name, namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def create(self, api_version: str, plural: str, obj: Obj, namespace: str = "") -> Obj:
        return await self.request("POST", resource_path(api_version, plural, namespace), obj)

    async def replace(self, api_version: str, plural: str, obj: Obj, namespace: str = "") -> Obj:
        name = obj["metadata"]["name"]
        return await self.request("PUT", resource_path(api_version, plural, namespace, name), obj)

    async def delete(self, api_version: str, plural: str, name: str, namespace: str = "") -> Any:
        return await self.request("DELETE", resource_path(api_version, plural, namespace, name))

    async def ensure(self, plural: str, obj: Obj, *, merge: bool = True) -> Obj:
        """Create `obj`, or make the existing object match it (idempotent).

        The existing object keeps its metadata (uid, labels not in `obj`, ...);
        everything else `obj` sets replaces the existing value. Retries on conflicts.
        """
        api_version = obj["apiVersion"]
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        for _ in range(5):
            current = await self.get_or_none(api_version, plural, meta["name"], namespace)
            if current is None:
                try:
                    return await self.create(api_version, plural, obj, namespace)
                except ApiError as e:
                    if e.code == 409:
                        continue
                    raise
            desired = dict(current) if merge else {}
            desired.update({k: v for k, v in obj.items() if k != "metadata"})
            m = dict(current["metadata"])
            for key in ("labels", "annotations"):
                if meta.get(key):
                    m[key] = {**(m.get(key) or {}), **meta[key]}
            desired["metadata"] = m
            if _same(desired, current):
                return current
            try:
                return await self.replace(api_version, plural, desired, namespace)
            except ApiError as e:
                if e.code == 409:
                    continue
                raise
        raise ApiError(409, None, f"could not update {plural}/{meta['name']}: too many conflicts")


def _same(a: Obj, b: Obj) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)

"""/healthz, /livez and /readyz with named checks, answered as upstream does
(`[+]name ok` lines with ?verbose, `ok` otherwise, 500 on failure)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Check = Callable[[], Awaitable[None]]  # raises on failure


class HealthChecks:
    def __init__(self) -> None:
        self.checks: dict[str, dict[str, Check]] = {"healthz": {}, "livez": {}, "readyz": {}}
        self.shutting_down = False
        self.add("ping", _ok, endpoints=("healthz", "livez", "readyz"))

    def add(self, name: str, check: Check, endpoints: tuple[str, ...] = ("healthz", "readyz")) -> None:
        for ep in endpoints:
            self.checks[ep][name] = check

    async def handle(self, request: web.Request, endpoint: str, only: str = "") -> web.Response:
        checks = self.checks[endpoint]
        if only:
            if only not in checks:
                return web.Response(status=404, text="404 page not found\n")
            checks = {only: checks[only]}
        excluded = set(request.query.getall("exclude", []))
        lines = []
        failed = False
        for name, check in checks.items():
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            try:
                await check()
                lines.append(f"[+]{name} ok")
            except Exception:  # a failing check reports, it never raises to the client
                failed = True
                lines.append(f"[-]{name} failed: reason withheld")
        if endpoint == "readyz" and self.shutting_down and not only:
            failed = True
            lines.append("[-]shutdown failed: reason withheld")
        if failed:
            return web.Response(status=500, text="\n".join(lines) + f"\n{endpoint} check failed\n")
        if "verbose" in request.query:
            return web.Response(text="\n".join(lines) + f"\n{endpoint} check passed\n")
        return web.Response(text="ok")


async def _ok() -> None:
    return None

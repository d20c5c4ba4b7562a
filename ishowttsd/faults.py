"""Test-only fault injection (ARCHITECTURE: off by default; enabled by [daemon] fault_injection = true).

`POST /v1/admin/fault {"kind": ..., "amount": ...}` exists only when fault injection is on:
- hang_loop: block the daemon's own event loop for `amount` seconds (default 3600) — the supervisor
  then stops feeding systemd's watchdog, which kills and restarts the unit;
- hang / grow_memory / crash: forwarded to the engine worker (protocol.Fault).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ishowttsd.engine.protocol import Fault

if TYPE_CHECKING:
    from ishowttsd.daemon import Daemon

log = structlog.get_logger("ishowttsd")
WORKER_FAULTS = ("hang", "grow_memory", "crash")


def fault_routes(daemon: Daemon) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/v1/admin/fault")
    async def inject(request: web.Request) -> web.Response:
        body = await request.json()
        kind, amount = str(body.get("kind", "")), float(body.get("amount", 0) or 0)
        log.warning("fault_injected", kind=kind, amount=amount)
        if kind == "hang_loop":
            asyncio.get_running_loop().call_soon(time.sleep, amount or 3600.0)
        elif kind in WORKER_FAULTS:
            if not await daemon.engine.send_fault(Fault(kind, amount)):
                return web.json_response({"error": {"code": "no_worker", "message": "no worker"}}, status=503)
        else:
            return web.json_response({"error": {"code": "bad_fault", "message": f"unknown kind {kind!r}"}},
                                     status=400)
        return web.json_response({"injected": kind})

    return routes

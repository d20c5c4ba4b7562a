"""Test-only fault injection (ARCHITECTURE: off by default; enabled by [daemon] fault_injection = true).

`POST /v1/admin/fault {"kind": ..., "amount": ..., "extra": {...}}` exists only when fault injection is on:
- hang_loop: block the daemon's own event loop for `amount` seconds (default 3600) — the supervisor
  then stops feeding systemd's watchdog, which kills and restarts the unit;
- hang / grow_memory / crash / slow: forwarded to the engine worker (protocol.Fault); slow sleeps
  `amount` s before each of the next extra.batches batches (none: until `amount` 0 clears it);
- compile_failure: recycle the engine with a spec whose compile fails (needs [engine] compile = true);
  the new workers fall back to eager and say why (engine.compile_error); answered once recycled;
- nvml_error: the GPU backend's next `amount` samples fail as NVML reads do (hw/injected.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ishowttsd.engine.protocol import Fault

if TYPE_CHECKING:
    from ishowttsd.daemon import Daemon

log = structlog.get_logger("ishowttsd")
WORKER_FAULTS = ("hang", "grow_memory", "crash", "slow")
Injector = Callable[["Daemon", Fault], Awaitable[web.Response]]


def fault_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def fault_from_body(body: Any) -> Fault | None:
    """The Fault a request body asks for; None when it is not an object with a numeric amount."""
    if not isinstance(body, dict) or not isinstance(body.get("extra", {}), dict):
        return None
    raw = body.get("amount")
    try:
        amount = 0.0 if raw is None else float(raw)
    except (TypeError, ValueError):
        return None
    extra = {str(key): str(value) for key, value in body.get("extra", {}).items()}
    return Fault(str(body.get("kind", "")), amount, extra)


async def hang_loop(daemon: Daemon, fault: Fault) -> web.Response:
    asyncio.get_running_loop().call_soon(time.sleep, fault.amount or 3600.0)
    return web.json_response({"injected": fault.kind})


async def to_worker(daemon: Daemon, fault: Fault) -> web.Response:
    if not await daemon.engine.send_fault(fault):
        return fault_error(503, "no_worker", "no worker")
    return web.json_response({"injected": fault.kind})


async def compile_failure(daemon: Daemon, fault: Fault) -> web.Response:
    """Recycle onto workers whose compile fails; the spec is clean again once they are up."""
    engine = daemon.engine
    clean = engine.spec
    if not clean.compile:
        return fault_error(409, "compile_off", "compile_failure needs [engine] compile = true")
    faulty = engine.spec = dataclasses.replace(clean, fault_compile_failure=True)
    try:
        recycled = await engine.recycle("fault: compile_failure")
    finally:
        if engine.spec is faulty:  # a reload meanwhile brought its own spec: keep that one
            engine.spec = clean
    return web.json_response({"injected": fault.kind, "recycled": recycled})


async def nvml_error(daemon: Daemon, fault: Fault) -> web.Response:
    backend = daemon.jobs.ctx.backend
    if not hasattr(backend, "fail_next"):
        return fault_error(409, "no_fault_hook", "the GPU backend is not wrapped for fault injection")
    backend.fail_next(int(fault.amount) or 1)
    return web.json_response({"injected": fault.kind})


INJECTORS: dict[str, Injector] = {"hang_loop": hang_loop, "compile_failure": compile_failure,
                                  "nvml_error": nvml_error, **dict.fromkeys(WORKER_FAULTS, to_worker)}


def fault_routes(daemon: Daemon) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/v1/admin/fault")
    async def inject(request: web.Request) -> web.Response:
        fault = fault_from_body(await request.json())
        if fault is None:
            return fault_error(400, "bad_fault", "expected {kind, amount (number), extra (object)}")
        injector = INJECTORS.get(fault.kind)
        if injector is None:
            return fault_error(400, "bad_fault", f"unknown kind {fault.kind!r}")
        log.warning("fault_injected", kind=fault.kind, amount=fault.amount, extra=fault.extra)
        return await injector(daemon, fault)

    return routes

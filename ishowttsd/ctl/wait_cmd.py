"""`ishowttsctl wait [--timeout S]`: block until the daemon answers /readyz (for scripts and demos)."""

from __future__ import annotations

import argparse
import asyncio
import time

from ishowttsd.ctl.client import DaemonClient, DaemonDown, DaemonError

POLL_S = 0.25


async def ready_once(socket: str) -> bool:
    try:
        async with DaemonClient(socket, timeout=5.0) as daemon:
            await daemon.request("GET", "/readyz")
            return True
    except (DaemonDown, DaemonError):
        return False


async def run_wait(args: argparse.Namespace, ctx: object) -> int:
    deadline = time.monotonic() + args.within
    while time.monotonic() < deadline:
        if await ready_once(ctx.socket):  # type: ignore[attr-defined]
            print("ready", file=ctx.out)  # type: ignore[attr-defined]
            return 0
        await asyncio.sleep(POLL_S)
    print(f"not ready within {args.within:.0f} s", file=ctx.err)  # type: ignore[attr-defined]
    return 1


def wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--within", type=float, default=300.0, help="give up after this many seconds (default 300)")

#!/usr/bin/env python3
"""Load test a running ishowttsd (R30): N requests at concurrency C over its Unix socket (or loopback TCP).

Bounded in count (--requests) and time (--max-seconds: no request starts after it). Prints latency,
time to first audio and RTF percentiles (p50/p95/p99), errors and throughput; --json writes them.

    scripts/load_test.py --socket /run/ishowttsd/ishowttsd.sock --concurrency 16 --requests 200 --stream
Exit: 0 all succeeded, 1 some failed, 2 bad arguments, 3 the daemon cannot be reached (nothing is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ishowttsd.bench.load import check_loopback, open_session, run_load
from ishowttsd.bench.report import format_table, load_row
from ishowttsd.bench.runner import WORKLOAD_TEXT
from ishowttsd.ctl.client import connect_reason, down_message

MAX_REQUESTS = 100_000
MAX_SECONDS = 24 * 3600.0
MAX_CONCURRENCY = 1024
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3
COLUMNS = ("concurrency", "requests", "ok", "errors", "p50", "p95", "p99", "ttfa_p50", "ttfa_p95", "rtf_p50",
           "throughput")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", default="/run/ishowttsd/ishowttsd.sock")
    where.add_argument("--url", help="loopback TCP, e.g. http://127.0.0.1:8765 (needs --token-file)")
    parser.add_argument("--token-file", help="bearer token for --url")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=100, help=f"per concurrency level (<= {MAX_REQUESTS})")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="per level; no request starts after it")
    parser.add_argument("--text", default=WORKLOAD_TEXT)
    parser.add_argument("--nfe", type=int)
    parser.add_argument("--voice")
    parser.add_argument("--stream", action="store_true", help="streamed answers (time to first audio)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS or not 0 < args.max_seconds <= MAX_SECONDS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS} and --max-seconds 0..{MAX_SECONDS:g}")
    if not all(1 <= c <= MAX_CONCURRENCY for c in args.concurrency):
        parser.error(f"--concurrency levels must be 1..{MAX_CONCURRENCY}, got {args.concurrency}")
    if args.url:
        try:
            check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    return args


class Unreachable(Exception):
    """The daemon does not answer /healthz: no load is sent."""


async def check_reachable(session: aiohttp.ClientSession, where: str) -> None:
    try:
        async with session.get("/healthz") as response:
            await response.read()
    except aiohttp.ClientConnectorError as exc:
        reason = connect_reason(exc.os_error) if where.startswith("/") else str(exc.os_error)
        raise Unreachable(down_message(where, reason)) from exc
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise Unreachable(down_message(where, f"{type(exc).__name__}: {exc}")) from exc


def body(args: argparse.Namespace) -> dict[str, Any]:
    extra = {k: v for k, v in (("nfe", args.nfe), ("voice", args.voice)) if v}
    return {"text": args.text, "stream": args.stream, **extra}


def flat(row: dict[str, Any]) -> dict[str, Any]:
    pick = lambda key, stat: (row.get(key) or {}).get(stat)  # noqa: E731
    return {**row, "errors": sum((row.get("errors") or {}).values()),
            "p50": pick("latency_s", "p50"), "p95": pick("latency_s", "p95"), "p99": pick("latency_s", "p99"),
            "ttfa_p50": pick("ttfa_s", "p50"), "ttfa_p95": pick("ttfa_s", "p95"), "rtf_p50": pick("rtf", "p50")}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    token = Path(args.token_file).read_text().strip() if args.token_file else ""
    base = body(args)
    rows = []
    async with open_session("" if args.url else args.socket, args.url or "", token=token) as session:
        await check_reachable(session, args.url or args.socket)
        for concurrency in args.concurrency:
            result = await run_load(session, lambda i: {**base, "seed": i}, concurrency, args.requests,
                                    max_seconds=args.max_seconds)
            rows.append(load_row(result))
            print(format_table([flat(rows[-1])], COLUMNS), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        rows = asyncio.run(run(args))
    except Unreachable as exc:
        print(f"load_test: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    for row in rows:
        if row["errors"]:
            print(f"c={row['concurrency']} errors: {row['errors']}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return EXIT_OK if all(not row["errors"] for row in rows) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

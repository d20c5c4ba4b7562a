"""ishowttsctl: talk to a running ishowttsd over its Unix socket (and check config files offline).

Exit codes: 0 ok, 1 the daemon (or a local file) reported an error, 2 usage, 3 daemon unreachable.

Adding a subcommand: write `async def run_x(args, ctx) -> int` (and, if it takes arguments, a
function adding them to its parser), then add a `Command` to COMMANDS, or to a group's
`children` for `ishowttsctl GROUP NAME` (see "voices" and "config").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ishowttsd.config import ConfigError, load_config
from ishowttsd.ctl import bench_cmd, jobs_cmd
from ishowttsd.ctl.client import DaemonClient, DaemonDown, DaemonError
from ishowttsd.ctl.wait_cmd import run_wait, wait_arguments
from ishowttsd.fsutil import atomic_write_bytes

DEFAULT_SOCKET = "/run/ishowttsd/ishowttsd.sock"
SOCKET_ENV = "ISHOWTTSD_SOCKET"
DEFAULT_TIMEOUT_S = 120.0
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DOWN = 0, 1, 2, 3
STATUS_CORE_KEYS = ("version", "uptime_s", "config_path", "engine", "counters")


@dataclass(frozen=True)
class CliContext:
    """What a subcommand needs besides its arguments: where the daemon is, and where to write."""

    socket: str
    timeout: float
    out: TextIO
    err: TextIO
    binary_out: BinaryIO

    def client(self) -> DaemonClient:
        return DaemonClient(self.socket, self.timeout)


Runner = Callable[[argparse.Namespace, CliContext], Awaitable[int]]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take no arguments of their own."""


@dataclass(frozen=True)
class Command:
    """A subcommand (with `run`) or a group of subcommands (with `children`)."""

    name: str
    help: str
    run: Runner | None = None
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    children: tuple[Command, ...] = ()


# --- formatting (pure) ---------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m {secs:02d}s"


def format_fields(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items() if not isinstance(value, (dict, list)))


def format_counts(counts: Mapping[str, Any]) -> str:
    """{"/v1/tts": {"200": 3}} → "/v1/tts 200×3"; {"queue_full": 2} → "queue_full 2"."""
    parts = [f"{key} {_count_text(value)}" for key, value in sorted(counts.items())]
    return "; ".join(parts) or "none"


def _count_text(value: Any) -> str:
    return " ".join(f"{k}×{v}" for k, v in value.items()) if isinstance(value, dict) else str(value)


def format_engine(engine: Mapping[str, Any]) -> str:
    """ "ready (model tiny, device cpu, restarts 0, standby ready)": the state, then its scalar fields."""
    fields = {key: value for key, value in engine.items() if key != "state"}
    standby = engine.get("standby")
    if isinstance(standby, dict) and standby.get("state", "off") != "off":
        fields["standby"] = standby["state"]
    details = format_fields(fields)
    return f"{engine.get('state', 'unknown')} ({details})" if details else str(engine.get("state", "unknown"))


def format_status(doc: Mapping[str, Any]) -> str:
    """The human summary of GET /v1/status: core fields first, then each extra section on one line."""
    engine = doc.get("engine") or {}
    counters = doc.get("counters") or {}
    lines = [f"ishowttsd {doc.get('version', '?')}, up {format_duration(float(doc.get('uptime_s', 0)))}",
             f"config    {doc.get('config_path') or '(built-in defaults)'}",
             f"engine    {format_engine(engine)}",
             f"requests  {format_counts(counters.get('requests', {}))}",
             f"errors    {format_counts(counters.get('errors', {}))}"]
    extra = [f"{key:<9} {json.dumps(value, default=str)}" for key, value in doc.items()
             if key not in STATUS_CORE_KEYS]
    return "\n".join(lines + extra)


def format_voice(voice: Mapping[str, Any]) -> str:
    tag = "built-in" if voice.get("builtin") else ""
    return (f"{voice['name']:<20} {voice['duration_s']:>6.2f} s {voice['sample_rate']:>6} Hz "
            f"{tag:<8}  {voice['ref_text']}")


def say_body(args: argparse.Namespace) -> dict[str, Any]:
    body = {"text": args.text, "voice": args.voice, "nfe": args.nfe, "seed": args.seed, "speed": args.speed,
            "format": args.format}
    return {key: value for key, value in body.items() if value is not None}


# --- subcommands ---------------------------------------------------------------------------------
async def run_status(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        doc = await daemon.status()
    print(json.dumps(doc, indent=2) if args.json else format_status(doc), file=ctx.out)
    return EXIT_OK


def status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the raw JSON status document")


async def run_say(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        reply = await daemon.synthesize(say_body(args))
    target = args.out or f"out.{args.format}"
    if target == "-":
        ctx.binary_out.write(reply.body)
        ctx.binary_out.flush()
    else:
        atomic_write_bytes(Path(target), reply.body)
    headers = reply.headers
    print(f"{target}: {headers.get('X-Audio-Seconds', '?')} s of audio in "
          f"{headers.get('X-Synthesis-Seconds', '?')} s (seed {headers.get('X-Seed', '?')})", file=ctx.err)
    return EXIT_OK


def say_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="what to say")
    parser.add_argument("--voice", help="voice name (default: the daemon's default voice)")
    parser.add_argument("--out", help="output file, written atomically; '-' = stdout "
                        "(default: out.wav, or out.pcm with --format pcm)")
    parser.add_argument("--nfe", type=int, help="ODE steps (default: the daemon's [engine].nfe)")
    parser.add_argument("--seed", type=int, help="noise seed, for repeatable output (default: random)")
    parser.add_argument("--speed", type=float, help="speaking rate, 0.3-3.0")
    parser.add_argument("--format", choices=("wav", "pcm"), default="wav",
                        help="wav, or raw s16le 24 kHz mono pcm")


async def run_voices_list(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        voices = await daemon.list_voices()
    print("\n".join(format_voice(voice) for voice in voices), file=ctx.out)
    return EXIT_OK


async def run_voices_add(args: argparse.Namespace, ctx: CliContext) -> int:
    audio = Path(args.audio).read_bytes()
    async with ctx.client() as daemon:
        voice = await daemon.add_voice(args.name, audio, Path(args.audio).name, args.text)
    print(f"added {format_voice(voice)}", file=ctx.out)
    return EXIT_OK


def voices_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="voice name: 1-64 of a-z 0-9 _ -")
    parser.add_argument("audio", help="reference recording (WAV, FLAC or OGG; 1-15 s by default)")
    parser.add_argument("--text", required=True, help="exact transcript of the recording")


async def run_voices_remove(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        await daemon.remove_voice(args.name)
    print(f"removed {args.name}", file=ctx.out)
    return EXIT_OK


def voice_name_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


async def run_recycle(args: argparse.Namespace, ctx: CliContext) -> int:
    body = {"reason": args.reason} if args.worker is None else {"reason": args.reason, "worker": args.worker}
    async with ctx.client() as daemon:
        await daemon.post_json("/v1/engine/recycle", body)
    print(f"recycled {'every worker' if args.worker is None else f'worker {args.worker}'}", file=ctx.out)
    return EXIT_OK


def recycle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", type=int, help="worker index (see `status`); default: every worker in turn")
    parser.add_argument("--reason", default="ishowttsctl recycle", help="recorded with the restart")


async def run_config_check(args: argparse.Namespace, ctx: CliContext) -> int:
    try:
        load_config(Path(args.file))
    except ConfigError as exc:
        print("\n".join(exc.problems), file=ctx.err)
        return EXIT_ERROR
    print(f"{args.file}: OK", file=ctx.out)
    return EXIT_OK


def file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="TOML file to validate (no daemon needed)")


COMMANDS: tuple[Command, ...] = (
    Command("status", "summary of the daemon's state", run_status, status_arguments),
    Command("say", "synthesise TEXT into a file", run_say, say_arguments),
    Command("wait", "wait until the daemon is ready", run_wait, wait_arguments),
    Command("recycle", "replace engine workers with fresh ones, no request lost (brings a failed worker back)",
            run_recycle, recycle_arguments),
    Command("voices", "manage reference voices", children=(
        Command("list", "list voices", run_voices_list),
        Command("add", "add or replace a voice", run_voices_add, voices_add_arguments),
        Command("remove", "delete a voice", run_voices_remove, voice_name_argument),
    )),
    Command("config", "configuration files", children=(
        Command("check", "validate a config file", run_config_check, file_argument),
        *jobs_cmd.config_commands(Command),
    )),
    *jobs_cmd.top_level_commands(Command),
    *bench_cmd.top_level_commands(Command),
)


# --- parsing and dispatch ------------------------------------------------------------------------
def add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command], dest: str = "command") -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sub)
        if command.children:
            add_commands(sub, command.children, f"{dest}_{command.name}")
        else:
            sub.set_defaults(run=command.run)


def build_parser(commands: Sequence[Command] = COMMANDS, environ: Mapping[str, str] = os.environ,
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ishowttsctl", description="Control a running ishowttsd.")
    parser.add_argument("--socket", default=environ.get(SOCKET_ENV, DEFAULT_SOCKET),
                        help=f"daemon socket (default: ${SOCKET_ENV}, else {DEFAULT_SOCKET})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT_S:g})")
    add_commands(parser, commands)
    return parser


async def dispatch(args: argparse.Namespace, ctx: CliContext) -> int:
    """Run the chosen subcommand, turning the known failures into exit codes and one-line messages."""
    try:
        return await args.run(args, ctx)
    except DaemonDown as exc:
        print(exc, file=ctx.err)
        return EXIT_DOWN
    except DaemonError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None, commands: Sequence[Command] = COMMANDS) -> int:
    try:
        args = build_parser(commands).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = CliContext(args.socket, args.timeout, sys.stdout, sys.stderr, sys.stdout.buffer)
    try:
        return asyncio.run(dispatch(args, ctx))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

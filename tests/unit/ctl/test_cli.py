"""ishowttsctl against a real aiohttp server on a temp Unix socket (stand-in handlers, own thread)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from ishowttsd.ctl.cli import COMMANDS, SOCKET_ENV, CliContext, Command, build_parser, format_status, main
from ishowttsd.ctl.client import connect_reason, down_message

AUDIO = b"RIFF" + bytes(range(256)) * 4
STATUS = {
    "version": "0.1.0",
    "uptime_s": 3725.0,
    "config_path": "/etc/ishowttsd/ishowttsd.toml",
    "engine": {"state": "ready", "model": "tiny", "device": "cpu", "restarts": 0},
    "counters": {"requests": {"/v1/tts": {"200": 3, "429": 1}}, "errors": {"queue_full": 1}},
    "jobs": {"backup": "ok"},
}


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class StandIn:
    """Stand-in daemon: answers like ishowttsd and records what it was sent."""

    tts_bodies: list[dict[str, object]] = field(default_factory=list)
    voices: dict[str, dict[str, object]] = field(default_factory=dict)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(STATUS)

    async def tts(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tts_bodies.append(body)
        if body["text"] == "overload":
            return json_error(429, "queue_full", "queue full (64 waiting)")
        return web.Response(
            body=AUDIO,
            headers={
                "Content-Type": "audio/wav",
                "X-Seed": "77",
                "X-Audio-Seconds": "1.000",
                "X-Synthesis-Seconds": "0.200",
            },
        )

    async def list_voices(self, request: web.Request) -> web.Response:
        return web.json_response({"voices": list(self.voices.values())})

    async def add_voice(self, request: web.Request) -> web.Response:
        form = await request.post()
        audio = form["audio"].file.read()  # type: ignore[union-attr]
        voice = {
            "name": form["name"],
            "ref_text": form["text"],
            "duration_s": len(audio) / 1000,
            "sample_rate": 16000,
            "builtin": False,
            "filename": form["audio"].filename,
        }  # type: ignore[union-attr]
        self.voices[str(form["name"])] = voice
        return web.json_response(voice, status=201)

    async def remove_voice(self, request: web.Request) -> web.Response:
        if self.voices.pop(request.match_info["name"], None) is None:
            return json_error(404, "voice_not_found", f"voice {request.match_info['name']!r} not found")
        return web.json_response({"deleted": request.match_info["name"]})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/status", self.status),
                web.post("/v1/tts", self.tts),
                web.get("/v1/voices", self.list_voices),
                web.post("/v1/voices", self.add_voice),
                web.delete("/v1/voices/{name}", self.remove_voice),
            ]
        )
        return app


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ctl", dir="/tmp"))  # Unix socket paths must stay short
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[tuple[str, StandIn]]:
    stand_in, socket_path, loop = StandIn(), str(short_dir / "d.sock"), asyncio.new_event_loop()
    runner = web.AppRunner(stand_in.app())
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, socket_path).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield socket_path, stand_in
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def run_cli(socket_path: str, *args: str) -> int:
    return main(["--socket", socket_path, *args])


def test_status_prints_a_human_summary(
    daemon: tuple[str, StandIn], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(daemon[0], "status") == 0
    out = capsys.readouterr().out
    assert "ishowttsd 0.1.0, up 1h 02m 05s" in out
    assert "engine    ready (model tiny, device cpu, restarts 0)" in out
    assert "requests  /v1/tts 200×3 429×1" in out and "errors    queue_full 1" in out
    assert 'jobs      {"backup": "ok"}' in out


def test_status_json_prints_the_document(
    daemon: tuple[str, StandIn], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(daemon[0], "status", "--json") == 0
    assert json.loads(capsys.readouterr().out) == STATUS


def test_say_writes_the_audio_file_and_sends_the_options(
    daemon: tuple[str, StandIn], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = short_dir / "hello.wav"
    code = run_cli(
        daemon[0],
        "say",
        "hello there",
        "--voice",
        "bob",
        "--out",
        str(out),
        "--nfe",
        "16",
        "--seed",
        "3",
        "--speed",
        "1.5",
    )
    assert code == 0 and out.read_bytes() == AUDIO
    assert sorted(p.name for p in short_dir.iterdir()) == ["d.sock", "hello.wav"]  # no temp file left
    assert daemon[1].tts_bodies == [
        {"text": "hello there", "voice": "bob", "nfe": 16, "seed": 3, "speed": 1.5, "format": "wav"}
    ]
    assert "1.000 s of audio in 0.200 s (seed 77)" in capsys.readouterr().err


def test_say_defaults_to_out_wav_in_the_working_directory(
    daemon: tuple[str, StandIn], short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(short_dir)
    assert run_cli(daemon[0], "say", "hi") == 0
    assert (short_dir / "out.wav").read_bytes() == AUDIO and daemon[1].tts_bodies == [
        {"text": "hi", "format": "wav"}
    ]


def test_say_to_stdout(daemon: tuple[str, StandIn], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert run_cli(daemon[0], "say", "hi", "--out", "-", "--format", "pcm") == 0
    assert capsysbinary.readouterr().out == AUDIO


def test_daemon_error_exits_1_with_its_message(
    daemon: tuple[str, StandIn], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(daemon[0], "say", "overload", "--out", str(short_dir / "x.wav")) == 1
    assert "queue full (64 waiting) (queue_full, HTTP 429)" in capsys.readouterr().err
    assert not (short_dir / "x.wav").exists()


def test_voices_add_list_remove(
    daemon: tuple[str, StandIn], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = short_dir / "me.flac"
    audio.write_bytes(b"x" * 2500)
    assert run_cli(daemon[0], "voices", "add", "me", str(audio), "--text", "Hello me.") == 0
    assert daemon[1].voices["me"]["filename"] == "me.flac"
    assert run_cli(daemon[0], "voices", "list") == 0
    assert "me" in capsys.readouterr().out.splitlines()[-1].split()[0]
    assert run_cli(daemon[0], "voices", "remove", "me") == 0 and daemon[1].voices == {}
    assert run_cli(daemon[0], "voices", "remove", "me") == 1
    assert "voice 'me' not found" in capsys.readouterr().err


def test_voices_add_with_a_missing_file_exits_1(
    daemon: tuple[str, StandIn], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(daemon[0], "voices", "add", "me", "/nonexistent.wav", "--text", "hi") == 1
    assert "/nonexistent.wav" in capsys.readouterr().err


def test_missing_socket_exits_3_with_a_hint(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(short_dir / "absent.sock")
    assert run_cli(missing, "status") == 3
    err = capsys.readouterr().err
    assert f"cannot reach ishowttsd at {missing}: no socket at that path" in err and "systemctl status" in err


def test_stale_socket_exits_3_as_refused(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = str(short_dir / "stale.sock")
    with socket.socket(socket.AF_UNIX) as unbound:
        unbound.bind(stale)  # bound, never listening: connect() is refused
        assert run_cli(stale, "status") == 3
    assert "connection refused" in capsys.readouterr().err


def test_permission_denied_names_the_socket_group() -> None:
    reason = connect_reason(OSError(errno.EACCES, "Permission denied"))
    assert "group" in reason and "usermod" in reason
    assert down_message("/run/x.sock", reason).startswith("cannot reach ishowttsd at /run/x.sock: permission")


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
REPO_ROOT = Path(__file__).parents[3]


def run_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*AS_NOBODY, code, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_real_permission_denied_as_an_unprivileged_user(daemon: tuple[str, StandIn]) -> None:
    if run_as_nobody("import ishowttsd.ctl.cli").returncode != 0:
        pytest.skip("user nobody cannot read this checkout or its venv")
    os.chmod(daemon[0], 0o600)
    os.chmod(Path(daemon[0]).parent, 0o755)
    code = "import sys; from ishowttsd.ctl.cli import main; sys.exit(main(sys.argv[1:]))"
    result = run_as_nobody(code, "--socket", daemon[0], "status")
    assert result.returncode == 3, result.stderr
    assert "must be in the socket's group" in result.stderr


def test_config_check_works_without_a_daemon(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = short_dir / "good.toml", short_dir / "bad.toml"
    good.write_text("[engine]\nnfe = 16\n")
    bad.write_text("[engine]\nnfe = 0\nnfee = 3\n")
    assert run_cli("/nonexistent.sock", "config", "check", str(good)) == 0
    assert capsys.readouterr().out.strip() == f"{good}: OK"
    assert run_cli("/nonexistent.sock", "config", "check", str(bad)) == 1
    err = capsys.readouterr().err
    assert "nfe" in err and "nfee" in err


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["voices"], ["say"], ["--timeout", "x", "status"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "status" in capsys.readouterr().out


def test_socket_default_comes_from_the_environment() -> None:
    assert (
        build_parser(environ={SOCKET_ENV: "/tmp/other.sock"}).parse_args(["status"]).socket
        == "/tmp/other.sock"
    )
    assert build_parser(environ={}).parse_args(["status"]).socket == "/run/ishowttsd/ishowttsd.sock"


def test_the_command_table_can_be_extended(
    daemon: tuple[str, StandIn], capsys: pytest.CaptureFixture[str]
) -> None:
    async def run_ping(args: argparse.Namespace, ctx: CliContext) -> int:
        async with ctx.client() as client:
            doc = await client.get_json("/v1/status")
        print(f"pong {doc['version']} {args.count}", file=ctx.out)
        return 0

    def ping_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=1)

    extended = (
        *COMMANDS,
        Command("extra", "extra", children=(Command("ping", "ping", run_ping, ping_arguments),)),
    )
    assert main(["--socket", daemon[0], "extra", "ping", "--count", "2"], extended) == 0
    assert capsys.readouterr().out.strip() == "pong 0.1.0 2"


def test_format_status_tolerates_a_sparse_document() -> None:
    text = format_status({"version": "1", "engine": {"state": "starting"}})
    assert "engine    starting\n" in text and "requests  none" in text and "(built-in defaults)" in text


def test_format_status_names_the_standby_when_there_is_one() -> None:
    on = format_status({"engine": {"state": "ready", "standby": {"state": "booting", "pid": 7}}})
    off = format_status({"engine": {"state": "ready", "standby": {"state": "off", "pid": None}}})
    assert "standby booting" in on and "standby" not in off

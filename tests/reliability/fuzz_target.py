"""The daemon under hostile input, checked after every case: alive, same worker, files untouched.

Used by test_fuzz_routes.py and test_slow_clients.py through conftest's module-scoped `target` fixture.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, field
from pathlib import Path

from reliability_support import DaemonProcess, Reply, TreeEntry, request, snapshot_tree

# docs/api.md: the only 5xx a client may see, by status → error codes
DOCUMENTED_5XX = {503: {"engine_unavailable", "not_ready"}, 504: {"deadline_exceeded"}}
# Routes that may write files (relative to the daemon's directory); every other route writes nothing.
ALLOWED_WRITES = {"/v1/voices": ("state/voices/",), "/v1/config/backups": ("state/config-backups/",),
                  "/v1/config/rollback": ("state/config-backups/", "ishowttsd.toml"),
                  "/v1/jobs/": ("state/", "log/")}


def allowed_writes(path: str) -> tuple[str, ...]:
    return next((prefixes for route, prefixes in ALLOWED_WRITES.items() if path.startswith(route)), ())


class Blob(bytes):
    """Bytes with a short repr, so hypothesis' reports stay readable."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes: {bytes(self[:48])!r}...)" if len(self) > 64 else bytes.__repr__(self)


@dataclass(repr=False)
class Target:
    daemon: DaemonProcess
    root: Path
    worker: int
    baseline: dict[str, TreeEntry] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Target({self.root})"

    @property
    def voices(self) -> Path:
        return self.root / "state" / "voices"

    def tree(self) -> dict[str, TreeEntry]:
        return snapshot_tree(self.root, lambda p: p.name == "daemon.log")

    def check_alive(self) -> None:
        assert self.daemon.process is not None and self.daemon.process.poll() is None, "the daemon died"
        engine = self.daemon.status()["engine"]
        assert (engine["state"], engine["pid"]) == ("ready", self.worker), f"worker crashed or replaced: {engine}"

    def check_files(self, allowed: tuple[str, ...]) -> None:
        """Only paths under `allowed` changed since the last case; no work dirs left among the voices."""
        now, before = self.tree(), self.baseline
        self.baseline = now  # one bad case must not fail all later ones
        changed = {p for p in now.keys() | before.keys() if now.get(p) != before.get(p)}
        outside = sorted(p for p in changed if not (allowed and p.startswith(allowed)))
        assert not outside, f"files changed outside {allowed or '(nothing may change)'}: {outside}"
        strays = [p.name for p in self.voices.iterdir() if p.name.startswith(".")]
        assert not strays, f"work directories left in the voices dir: {strays}"


def check_reply(reply: Reply, target: Target) -> None:
    """A documented answer: 2xx/4xx with a JSON error on failure, 5xx only as docs/api.md lists."""
    is_json = reply.headers.get("content-type", "").startswith("application/json")
    if reply.status >= 400 and is_json and reply.body:  # HEAD answers carry no body
        error = reply.json()["error"]
        assert error["code"] and error["message"], reply.body
        if reply.status >= 500:
            assert error["code"] in DOCUMENTED_5XX.get(reply.status, set()), (reply.status, reply.body)
    assert reply.status < 500 or reply.status in DOCUMENTED_5XX, (reply.status, reply.body[:500])
    if reply.status == 200 and reply.headers.get("content-type") == "audio/wav":
        with wave.open(io.BytesIO(reply.body)) as wav:
            assert wav.getframerate() == 24000 and wav.getnframes() > 0


def after_case(target: Target, route: str = "") -> None:
    target.check_alive()
    target.check_files(allowed_writes(route))


def post(target: Target, path: str, body: bytes, content_type: str | None) -> Reply:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return request(target.daemon.socket, "POST", path, body, headers, timeout=90)

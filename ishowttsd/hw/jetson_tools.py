"""NVIDIA's Jetson tools (nvpmodel, jetson_clocks) through CommandRunner, plus their parsers.

Output formats (L4T 32-36, as also parsed by jetson_stats):
  nvpmodel -q           "NV Power Mode: MAXN" then the mode id on its own line ("0");
                        warnings such as "NVPM WARN: fan mode is not set!" may come first.
  jetson_clocks --show  "GPU MinFreq=... MaxFreq=... CurrentFreq=..." (Hz),
                        "EMC MinFreq=... MaxFreq=... CurrentFreq=... FreqOverride=...",
                        "NV Power Mode: MAXN", plus CPU/fan lines we do not need.
jetson_clocks --store FILE asks before overwriting an existing FILE, so we only store into a
file we know is absent; stdin is /dev/null anyway (see command.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ishowttsd.hw.command import CommandResult, CommandRunner

NVPMODEL = "nvpmodel"
JETSON_CLOCKS = "jetson_clocks"
POWER_MODE_RE = re.compile(r"^NV Power Mode:\s*(?P<name>\S+)\s*$", re.MULTILINE)
MODE_ID_RE = re.compile(r"^\s*(?P<id>\d+)\s*$", re.MULTILINE)
SHOW_PATTERNS: dict[str, re.Pattern[str]] = {
    "gpu": re.compile(r"^GPU MinFreq=(?P<min_hz>\d+) MaxFreq=(?P<max_hz>\d+) CurrentFreq=(?P<cur_hz>\d+)",
                      re.MULTILINE),
    "emc": re.compile(r"^EMC MinFreq=(?P<min_hz>\d+) MaxFreq=(?P<max_hz>\d+) CurrentFreq=(?P<cur_hz>\d+)",
                      re.MULTILINE),
}


@dataclass(frozen=True)
class PowerMode:
    id: int | None
    name: str


def parse_nvpmodel_query(stdout: str) -> PowerMode | None:
    """PowerMode from `nvpmodel -q`; None if the output has no 'NV Power Mode' line."""
    name = POWER_MODE_RE.search(stdout)
    if name is None:
        return None
    mode_id = MODE_ID_RE.search(stdout, name.end())
    return PowerMode(int(mode_id.group("id")) if mode_id else None, name.group("name"))


def parse_jetson_clocks_show(stdout: str) -> dict[str, Any]:
    """{'gpu': {min_hz, max_hz, cur_hz}, 'emc': {...}, 'power_mode': name} for what is present."""
    parsed: dict[str, Any] = {}
    for key, pattern in SHOW_PATTERNS.items():
        match = pattern.search(stdout)
        if match:
            parsed[key] = {name: int(value) for name, value in match.groupdict().items()}
    mode = POWER_MODE_RE.search(stdout)
    if mode:
        parsed["power_mode"] = mode.group("name")
    return parsed


class JetsonTools:
    """Thin argv builders over a CommandRunner; every call returns the CommandResult."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    def has_nvpmodel(self) -> bool:
        return self._runner.available(NVPMODEL)

    def has_jetson_clocks(self) -> bool:
        return self._runner.available(JETSON_CLOCKS)

    def query_mode(self) -> tuple[PowerMode | None, CommandResult]:
        result = self._runner.run([NVPMODEL, "-q"])
        return (parse_nvpmodel_query(result.stdout) if result.ok else None), result

    def set_mode(self, mode_id: int) -> CommandResult:
        return self._runner.run([NVPMODEL, "-m", str(mode_id)])

    def store(self, path: Path) -> CommandResult:
        return self._runner.run([JETSON_CLOCKS, "--store", str(path)])

    def apply(self) -> CommandResult:
        return self._runner.run([JETSON_CLOCKS])

    def restore(self, path: Path) -> CommandResult:
        return self._runner.run([JETSON_CLOCKS, "--restore", str(path)])

    def show(self) -> tuple[dict[str, Any], CommandResult]:
        result = self._runner.run([JETSON_CLOCKS, "--show"])
        return (parse_jetson_clocks_show(result.stdout) if result.ok else {}), result

"""Host CPU/RAM/swap/load sampling, shared by every backend.

Two samplers with the same output:
- PsutilSystemSampler: the live machine through psutil (psutil has no root parameter, so it is
  only used when the configured sysfs_root is "/").
- ProcSystemSampler: proc/meminfo, proc/loadavg and proc/stat read through Sysfs(root), used for
  any other root (tests, fake boards). CPU % is the busy share of jiffies since the previous
  call (since boot on the first call).
`system_sampler_for(sysfs)` picks between them; choose_backend() uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil

from ishowttsd.hw.base import FieldReader, SystemSample, SystemSampler
from ishowttsd.hw.sysfs import Sysfs, SysfsError

KIB = 1024
IDLE_COLUMNS = (3, 4)  # idle, iowait in the "cpu" line of /proc/stat (0-based after the label)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo → {key: bytes}; values given in kB are converted."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key.strip()] = int(words[0]) * (KIB if words[1:] == ["kB"] else 1)
    return values


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = (float(word) for word in text.split()[:3])
    return one, five, fifteen


def parse_cpu_jiffies(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate 'cpu' line of /proc/stat."""
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "cpu":
            counts = [int(word) for word in words[1:9]]
            idle = sum(counts[column] for column in IDLE_COLUMNS)
            return sum(counts) - idle, sum(counts)
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return 100.0 * busy / total if total > 0 else 0.0


def memory_fields(meminfo: dict[str, int]) -> dict[str, int]:
    total, available = meminfo["MemTotal"], meminfo["MemAvailable"]
    swap_total = meminfo.get("SwapTotal", 0)
    return {"memory_total_bytes": total, "memory_available_bytes": available,
            "memory_used_bytes": total - available, "swap_total_bytes": swap_total,
            "swap_used_bytes": swap_total - meminfo.get("SwapFree", swap_total)}


def _describe(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, SysfsError) else f"unreadable: {exc}"


class ProcSystemSampler:
    """System sample from proc files below an injectable root."""

    def __init__(self, sysfs: Sysfs) -> None:
        self._sysfs = sysfs
        self._last_jiffies: tuple[int, int] = (0, 0)

    def sample(self) -> SystemSample:
        reader = FieldReader(_describe, (SysfsError, ValueError, KeyError))
        memory = reader.read("memory", lambda: memory_fields(parse_meminfo(self._read("proc/meminfo"))))
        reader.read("load_average", lambda: parse_loadavg(self._read("proc/loadavg")))
        reader.read("cpu_percent", self._cpu_percent)
        values = {key: value for key, value in reader.values.items() if key != "memory"}
        return SystemSample(**values, **(memory or {}), missing=reader.missing)

    def _cpu_percent(self) -> float:
        jiffies = parse_cpu_jiffies(self._read("proc/stat"))
        percent = busy_percent(self._last_jiffies, jiffies)
        self._last_jiffies = jiffies
        return percent

    def _read(self, relative: str) -> str:
        return self._sysfs.read_text(relative)


class PsutilSystemSampler:
    """System sample of the live machine via psutil (non-blocking cpu_percent)."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # prime: the next call measures from here

    def sample(self) -> SystemSample:
        reader = FieldReader(lambda exc: f"psutil: {exc}", (OSError, psutil.Error, AttributeError))
        memory = reader.read("memory", self._memory)
        reader.read("load_average", lambda: tuple(float(v) for v in psutil.getloadavg()))
        reader.read("cpu_percent", lambda: float(psutil.cpu_percent(interval=None)))
        values = {key: value for key, value in reader.values.items() if key != "memory"}
        return SystemSample(**values, **(memory or {}), missing=reader.missing)

    @staticmethod
    def _memory() -> dict[str, int]:
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {"memory_total_bytes": memory.total, "memory_available_bytes": memory.available,
                "memory_used_bytes": memory.total - memory.available,
                "swap_total_bytes": swap.total, "swap_used_bytes": swap.used}


SAMPLER_FACTORIES: dict[bool, Callable[[Sysfs], SystemSampler]] = {
    True: lambda sysfs: PsutilSystemSampler(),
    False: ProcSystemSampler,
}


def system_sampler_for(sysfs: Sysfs) -> SystemSampler:
    """psutil for the live root '/', proc files through Sysfs for any other root."""
    return SAMPLER_FACTORIES[sysfs.root == Path("/")](sysfs)

"""ishowttsd configuration: frozen dataclasses mirroring config/ishowttsd.toml, loading and validation.

Every attribute is named exactly like its TOML key and defaults to the value shipped in
config/ishowttsd.toml (a unit test keeps the two equal). Each field carries its Rule
(config_schema.py) in its metadata; parsing walks the dataclass fields, so adding a key means
adding one line here. All problems of a file are collected and raised together as ConfigError.

Stored types differ from TOML in a few documented places: absolute paths are Path, optional
paths are Path or None ("" in TOML), daemon.socket_mode is an int (0o660), floats are float.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ishowttsd import config_schema as s
from ishowttsd.config_schema import Rule, setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONFIG_PATH", "Config", "ConfigError", "DaemonConfig", "EngineConfig", "GpuConfig",
    "JobsConfig", "LimitsConfig", "LoggingConfig", "VoicesConfig", "WatchdogConfig",
    "apply_overrides", "config_to_dict", "load_config", "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/ishowttsd/ishowttsd.toml")
_frozen = dataclass(frozen=True, kw_only=True)


class ConfigError(Exception):
    """One or more configuration problems; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@_frozen
class DaemonConfig:
    socket: Path = setting(Path("/run/ishowttsd/ishowttsd.sock"), s.absolute_path())
    socket_mode: int = setting(0o660, s.octal_mode())
    socket_group: str = setting("", s.text())
    state_dir: Path = setting(Path("/var/lib/ishowttsd"), s.absolute_path())
    log_dir: Path = setting(Path("/var/log/ishowttsd"), s.absolute_path())
    tcp_listen: str = setting("", s.loopback_listen())
    tcp_token_file: Path | None = setting(None, s.optional_path())
    drain_timeout_s: float = setting(20.0, s.positive())
    fault_injection: bool = setting(False, s.boolean())


@_frozen
class EngineConfig:
    model: str = setting("F5TTS_v1_Base", s.model())
    vocab_file: Path | None = setting(None, s.optional_path())
    vocoder_dir: Path | None = setting(None, s.optional_path())
    allow_download: bool = setting(False, s.boolean())
    device: str = setting("auto", s.device())
    dtype: str = setting("auto", s.choice("auto", "fp32", "fp16", "bf16"))
    compile: bool = setting(False, s.boolean())
    nfe: int = setting(8, s.integer(1, 64))
    cfg_strength: float = setting(2.0, s.number(0.0, 10.0))
    sway_sampling_coef: float = setting(-1.0, s.number(-1.0, 1.0))
    speed: float = setting(1.0, s.number(0.3, 3.0))
    max_chunk_bytes: int = setting(135, s.integer(32, 4096))
    crossfade_ms: int = setting(150, s.integer(0, 2000))
    boot_timeout_s: float = setting(900.0, s.positive())
    ping_interval_s: float = setting(2.0, s.positive())
    heartbeat_timeout_s: float = setting(15.0, s.positive())
    max_restarts: int = setting(5, s.integer(0, 1000))
    restart_window_s: float = setting(300.0, s.positive())
    standby: bool = setting(False, s.boolean())
    boot_yield_max_pause_s: float = setting(5.0, s.number(0.0, 3600.0))
    devices: tuple[str, ...] | str = setting((), s.device_list())
    max_batch: int = setting(8, s.integer(1, 64))
    busy_fill_ms: float = setting(5.0, s.number(0.0, 1000.0))
    batch_window_ms: float = setting(0.0, s.number(0.0, 1000.0))
    max_frames: int = setting(2048, s.integer(64, 16384))
    min_frames: int = setting(256, s.integer(16, 16384))
    bucket_growth: float = setting(1.5, s.number(1.05, 4.0))
    stream_first_chunk_bytes: int = setting(0, s.integer(0, 4096))
    stream_margin_ms: float = setting(500.0, s.number(0.0, 60000.0))
    compile_mode: str = setting("reduce-overhead", s.choice("default", "reduce-overhead", "max-autotune",
                                                            "max-autotune-no-cudagraphs"))
    compile_backend: str = setting("inductor", s.choice("inductor", "aot_eager", "eager"))
    compile_scope: str = setting("captured", s.choice("captured", "aot", "step", "blocks"))
    cudnn_benchmark: bool = setting(False, s.boolean())
    position_conv: str = setting("conv1d", s.choice("conv1d", "gemm", "auto"))
    cpu_threads: int = setting(0, s.integer(0, 1024))


@_frozen
class LimitsConfig:
    max_body_bytes: int = setting(65536, s.integer(1024))
    max_upload_bytes: int = setting(8388608, s.integer(1024))
    max_text_chars: int = setting(2000, s.integer(1))
    min_voice_s: float = setting(1.0, s.positive())
    max_voice_s: float = setting(15.0, s.positive())
    max_ref_text_chars: int = setting(500, s.integer(1))
    max_queue: int = setting(64, s.integer(1))
    request_timeout_s: float = setting(60.0, s.positive())
    retry_after_s: int = setting(2, s.integer(1, 3600))


@_frozen
class VoicesConfig:
    default_voice: str = setting("default", s.voice_name())


@_frozen
class GpuConfig:
    backend: str = setting("auto", s.choice("auto", "nvml", "jetson", "none"))
    lock_clocks: bool = setting(True, s.boolean())
    sysfs_root: Path = setting(Path("/"), s.absolute_path())
    sm_clock_mhz: int = setting(0, s.integer(0, 100000))
    nvpmodel_mode: int = setting(0, s.integer(-1, 255))
    command_timeout_s: float = setting(20.0, s.positive())
    command_retries: int = setting(2, s.integer(0, 10))


@_frozen
class JobsConfig:
    enabled: bool = setting(True, s.boolean())
    clock_check_minutes: int = setting(5, s.integer(1, 1440))
    sample_interval_s: int = setting(30, s.integer(1, 3600))
    memory_history_max: int = setting(2880, s.integer(1, 1_000_000))
    leak_window: int = setting(120, s.integer(2, 1_000_000))
    leak_slope_mib_per_hour: float = setting(64.0, s.positive())
    rss_ceiling_mib: int = setting(0, s.integer(0))
    gpu_ceiling_mib: int = setting(0, s.integer(0))
    recycle_at: str = setting("", s.clock_time(empty_ok=True))
    recycle_jitter_minutes: int = setting(10, s.integer(0, 720))
    health_at: str = setting("09:00", s.clock_time())
    rtf_target: float = setting(0.3, s.positive())
    backup_at: str = setting("03:30", s.clock_time())
    backup_keep: int = setting(30, s.integer(1, 10000))
    artefact_retention_days: int = setting(90, s.integer(1, 36500))
    update_check_day: str = setting("mon", s.weekday())
    update_check_at: str = setting("04:00", s.clock_time())
    benchmark_day: str = setting("sun", s.weekday())
    benchmark_at: str = setting("03:00", s.clock_time())
    benchmark_monthly_day: int = setting(1, s.integer(1, 28))
    quality_max_mel_distance: float = setting(1.5, s.positive())


@_frozen
class WatchdogConfig:
    canary_interval_s: float = setting(60.0, s.positive())
    canary_max_age_s: float = setting(300.0, s.positive())
    max_failed_recoveries: int = setting(3, s.integer(1, 1000))


@_frozen
class LoggingConfig:
    format: str = setting("auto", s.choice("auto", "json", "journal", "console"))
    level: str = setting("info", s.choice("debug", "info", "warning", "error"))


@_frozen
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    voices: VoicesConfig = field(default_factory=VoicesConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def section_rules(section_class: type) -> dict[str, Rule]:
    """Key name -> Rule for one section dataclass."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(section_class)}


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML file; None gives the built-in defaults. Raises ConfigError."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(_read_text(Path(path)))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(str(path), str(exc))]) from exc
    return parse_config(data, str(path))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: not UTF-8 text (byte offset {exc.start})"]) from exc


def _syntax_problem(source: str, message: str) -> str:
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found is None:
        return f"{source}: TOML syntax error: {message}"
    where = f"line {found.group(1)}, column {found.group(2)}"
    return f"{source}: {where}: TOML syntax error: {message[: found.start()]}"


def parse_config(data: dict[str, Any], source: str) -> Config:
    """Validate an already-parsed TOML document. Raises ConfigError listing every problem."""
    problems: list[str] = []
    sections = {}
    for name, raw in data.items():
        parsed = _parse_section(name, raw, source, problems)
        if parsed is not None:
            sections[name] = parsed
    if problems:
        raise ConfigError(problems)
    return Config(**sections)


def _parse_section(name: str, raw: Any, source: str, problems: list[str]) -> Any | None:
    section_class = SECTIONS.get(name)
    if section_class is None:
        problems.append(f"{source}: [{name}]: " + s.unknown_problem("section", name, SECTIONS))
        return None
    if not isinstance(raw, dict):
        problems.append(f"{source}: [{name}]: expected a table, found {s.describe(raw)}")
        return None
    values, bad_keys = _parse_keys(name, raw, source, problems)
    section = section_class(**values)
    crossed = _cross_check(section, name, bad_keys, source, problems)
    return None if bad_keys or crossed else section


def _parse_keys(section: str, raw: dict[str, Any], source: str,
                problems: list[str]) -> tuple[dict[str, Any], set[str]]:
    """Valid keys -> loaded values, plus the names of the keys that were reported as problems."""
    rules = section_rules(SECTIONS[section])
    values, bad_keys = {}, set()
    for key, value in raw.items():
        problem = _key_problem(rules.get(key), section, key, value, rules)
        if problem is None:
            values[key] = rules[key].load(value)
        else:
            problems.append(f"{source}: [{section}].{key}: {problem}")
            bad_keys.add(key)
    return values, bad_keys


def _key_problem(rule: Rule | None, section: str, key: str, value: Any, rules: dict[str, Rule]) -> str | None:
    if rule is None:
        return s.unknown_problem(f"key of [{section}]", key, rules)
    return None if rule.accepts(value) else f"expected {rule.expected}, found {s.describe(value)}"


def _cross_check(section: Any, name: str, bad_keys: set[str], source: str, problems: list[str]) -> bool:
    """Append cross-key problems (skipping checks on keys already reported); True if any failed."""
    rules = section_rules(type(section))
    failed = [c for c in s.CROSS_CHECKS if c.section == name and not {c.key, c.other} & bad_keys
              and not c.holds(section)]
    for check in failed:
        shown = rules[check.key].dump(getattr(section, check.key))
        problems.append(f"{source}: [{name}].{check.key}: expected {check.expected(section)}, "
                        f"found {s.describe(shown)}")
    return bool(failed)


_OVERRIDE_KEYS: dict[str, tuple[str, str]] = {
    "socket": ("daemon", "socket"), "state_dir": ("daemon", "state_dir"), "model": ("engine", "model"),
}


def apply_overrides(cfg: Config, *, socket: Path | str | None = None, state_dir: Path | str | None = None,
                    model: Path | str | None = None) -> Config:
    """Command-line overrides on top of a loaded config (relative paths are made absolute)."""
    given = {"socket": socket, "state_dir": state_dir, "model": model}
    for option, value in given.items():
        if value is not None:
            cfg = _override(cfg, option, _toml_value(option, value))
    return cfg


def _toml_value(option: str, value: Path | str) -> str:
    text = str(value)
    if option == "model" and text in s.MODEL_NAMES:
        return text
    return str(Path(text).absolute())


def _override(cfg: Config, option: str, value: str) -> Config:
    section_name, key = _OVERRIDE_KEYS[option]
    rule = section_rules(SECTIONS[section_name])[key]
    if not rule.accepts(value):
        flag = "--" + option.replace("_", "-")
        raise ConfigError([f"{flag}: expected {rule.expected}, found {s.describe(value)}"])
    section = dataclasses.replace(getattr(cfg, section_name), **{key: rule.load(value)})
    return dataclasses.replace(cfg, **{section_name: section})


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as a TOML-shaped dict (paths as str, socket_mode as "0660"); parse_config inverts it."""
    return {name: _section_to_dict(getattr(cfg, name)) for name in SECTIONS}


def _section_to_dict(section: Any) -> dict[str, Any]:
    rules = section_rules(type(section))
    return {key: rule.dump(getattr(section, key)) for key, rule in rules.items()}

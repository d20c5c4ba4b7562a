"""Tests for ishowttsd.config / config_schema: defaults, validation messages, overrides, round trips."""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    apply_overrides,
    config_to_dict,
    load_config,
    parse_config,
)
from ishowttsd.config_schema import parse_clock_time, parse_loopback_listen

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "ishowttsd.toml"
FIXTURES = ROOT / "tests" / "fixtures" / "configs"


def problems_of(data: dict, source: str = "test.toml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source)
    return caught.value.problems


def test_shipped_file_equals_dataclass_defaults() -> None:
    assert load_config(SHIPPED) == Config()


def test_config_to_dict_of_defaults_is_the_shipped_toml() -> None:
    assert config_to_dict(Config()) == tomllib.loads(SHIPPED.read_text())


def test_none_path_gives_defaults_and_default_path_is_etc() -> None:
    assert load_config(None) == Config()
    assert Path("/etc/ishowttsd/ishowttsd.toml") == DEFAULT_CONFIG_PATH


def test_default_types_are_converted() -> None:
    cfg = Config()
    assert cfg.daemon.socket == Path("/run/ishowttsd/ishowttsd.sock")
    assert cfg.daemon.socket_mode == 0o660
    assert cfg.daemon.tcp_token_file is None
    assert cfg.engine.vocab_file is None
    assert isinstance(cfg.limits.min_voice_s, float)


def test_good_custom_fixture_loads_with_every_value() -> None:
    cfg = load_config(FIXTURES / "good_custom.toml")
    assert cfg.daemon.socket_mode == 0o600
    assert cfg.daemon.tcp_listen == "[::1]:8765"
    assert cfg.daemon.tcp_token_file == Path("/etc/ishowttsd/token")
    assert cfg.daemon.drain_timeout_s == 5.0 and isinstance(cfg.daemon.drain_timeout_s, float)
    assert cfg.engine.model == "/srv/models/f5tts_v1_base.safetensors"
    assert (cfg.engine.device, cfg.engine.dtype, cfg.engine.nfe) == ("cuda:1", "bf16", 16)
    assert cfg.limits.min_voice_s == 2.0
    assert cfg.voices.default_voice == "narrator_en-1"
    assert (cfg.gpu.backend, cfg.gpu.nvpmodel_mode) == ("jetson", -1)
    assert (cfg.jobs.recycle_at, cfg.jobs.update_check_day) == ("04:15", "fri")
    assert cfg.logging == dataclasses.replace(cfg.logging, format="journal", level="debug")
    assert cfg.engine.cfg_strength == Config().engine.cfg_strength  # untouched keys keep defaults


def test_bad_values_fixture_lists_every_problem_with_file_and_key() -> None:
    path = FIXTURES / "bad_values.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    expected = [
        "[daemon].socket: expected an absolute path, found string \"relative/api.sock\"",
        "[daemon].socket_mode: expected an octal mode string like \"0660\", found string \"660x\"",
        "[daemon].tcp_listen: expected \"\" (off), \"127.x.y.z:PORT\" or \"[::1]:PORT\" (loopback only), "
        "found string \"0.0.0.0:8080\"",
        "[daemon].drain_timeout_s: expected a number > 0, found float -1.0",
        "[engine].nfe: expected an integer from 1 to 64, found integer 100",
        "[engine].speed: expected a number from 0.3 to 3.0, found boolean true",
        "[engine].device: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", found string \"gpu\"",
        "[engine].dtype: expected one of \"auto\", \"fp32\", \"fp16\", \"bf16\", found string \"fp8\"",
        "[engine].max_restarts: expected an integer from 0 to 1000, found float 2.5",
        "[engine].cfg_strength: expected a number from 0.0 to 10.0, found string \"2\"",
        "[engine].modle: expected a known key of [engine], found unknown 'modle' (did you mean model?)",
        "[limits].min_voice_s: expected a number < max_voice_s (15.0), found float 20.0",
        "[jobs].health_at: expected a time \"HH:MM\", found string \"9:00\"",
        "[jobs].benchmark_day: expected one of \"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", "
        "\"sun\", found string \"sunday\"",
        "[jobs].backup_at: expected a time \"HH:MM\", found time 03:30:00",
        "[logging].level: expected one of \"debug\", \"info\", \"warning\", \"error\", "
        "found string \"verbose\"",
        "[extras]: expected a known section, found unknown 'extras' (known: daemon, engine, limits, voices, "
        "gpu, jobs, watchdog, logging)",
    ]
    assert caught.value.problems == [f"{path}: {line}" for line in expected]
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_syntax_error_names_file_and_line() -> None:
    path = FIXTURES / "bad_syntax.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: line 3, column 9: TOML syntax error: ")


def test_unreadable_and_non_utf8_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read: No such file"):
        load_config(tmp_path / "missing.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[voices]\ndefault_voice = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin\.toml: line 2: not UTF-8 text \(byte offset 29\)"):
        load_config(latin)


def test_tcp_listen_requires_token_file() -> None:
    path = FIXTURES / "bad_tcp_without_token.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f'{path}: [daemon].tcp_token_file: expected a token file path because tcp_listen is '
        f'"127.0.0.1:8080", found string ""']


def test_cross_check_is_skipped_when_a_key_it_reads_is_already_wrong() -> None:
    problems = problems_of({"limits": {"min_voice_s": "x", "max_voice_s": 0.5}})
    assert problems == ['test.toml: [limits].min_voice_s: expected a number > 0, found string "x"']


@pytest.mark.parametrize(("section", "key", "value"), [
    ("engine", "nfe", True), ("engine", "nfe", 8.0), ("engine", "nfe", 0), ("engine", "nfe", 65),
    ("engine", "speed", 0.29), ("engine", "speed", 3.01), ("engine", "speed", float("nan")),
    ("engine", "boot_timeout_s", 0), ("engine", "boot_timeout_s", float("inf")),
    ("engine", "compile", 1), ("engine", "model", "other"), ("engine", "model", "weights.bin"),
    ("engine", "vocab_file", "vocab.txt"), ("daemon", "socket_mode", "0o660"),
    ("daemon", "socket_mode", 660), ("daemon", "state_dir", ""), ("jobs", "recycle_at", "24:00"),
    ("jobs", "health_at", ""), ("jobs", "update_check_at", "09:60"), ("jobs", "benchmark_monthly_day", 31),
    ("gpu", "nvpmodel_mode", -2), ("gpu", "backend", "cuda"), ("voices", "default_voice", "../etc"),
    ("voices", "default_voice", ""), ("limits", "retry_after_s", 0), ("logging", "format", "text"),
    ("daemon", "drain_timeout_s", "20"), ("watchdog", "max_failed_recoveries", 0),
])
def test_rejected_values(section: str, key: str, value: object) -> None:
    [problem] = problems_of({section: {key: value}})
    assert problem.startswith(f"test.toml: [{section}].{key}: expected ")
    assert ", found " in problem


@pytest.mark.parametrize(("section", "key", "value", "stored"), [
    ("engine", "speed", 2, 2.0), ("engine", "nfe", 64, 64), ("engine", "nfe", 1, 1),
    ("engine", "speed", 0.3, 0.3),
    ("engine", "model", "tiny", "tiny"), ("engine", "model", "ckpt/m_1200.pt", "ckpt/m_1200.pt"),
    ("engine", "device", "cpu", "cpu"), ("engine", "vocoder_dir", "/opt/vocos", Path("/opt/vocos")),
    ("daemon", "socket_mode", "600", 0o600), ("jobs", "recycle_at", "23:59", "23:59"),
    ("jobs", "recycle_at", "", ""), ("jobs", "benchmark_monthly_day", 28, 28),
    ("gpu", "nvpmodel_mode", -1, -1), ("engine", "sway_sampling_coef", 0, 0.0),
])
def test_accepted_values(section: str, key: str, value: object, stored: object) -> None:
    cfg = parse_config({section: {key: value}}, "test.toml")
    assert getattr(getattr(cfg, section), key) == stored
    assert type(getattr(getattr(cfg, section), key)) is type(stored)


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.1.2.3:1", "[::1]:65535"])
def test_loopback_listen_accepted(listen: str) -> None:
    cfg = parse_config({"daemon": {"tcp_listen": listen, "tcp_token_file": "/etc/t"}}, "test.toml")
    assert cfg.daemon.tcp_listen == listen


@pytest.mark.parametrize("listen", [
    "0.0.0.0:80", "192.168.1.1:80", "localhost:80", "[::]:80", "127.0.0.1", "127.0.0.1:0",
    "127.0.0.1:70000", "::1:80", "[::ffff:127.0.0.1]:80", "127.0.0.1:http", "[::1]", "127.0.0.1:+80",
])
def test_non_loopback_listen_rejected(listen: str) -> None:
    [problem] = problems_of({"daemon": {"tcp_listen": listen, "tcp_token_file": "/etc/t"}})
    assert "[daemon].tcp_listen: expected" in problem
    with pytest.raises(ValueError):
        parse_loopback_listen(listen)


@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_ipv4_listen_accepted_exactly_inside_127_slash_8(address: ipaddress.IPv4Address, port: int) -> None:
    inside = address in ipaddress.ip_network("127.0.0.0/8")
    try:
        assert parse_loopback_listen(f"{address}:{port}") == (str(address), port)
        assert inside
    except ValueError:
        assert not inside


def test_parse_clock_time() -> None:
    assert parse_clock_time("03:30") == (3, 30)
    with pytest.raises(ValueError):
        parse_clock_time("3:30")


def test_section_that_is_not_a_table() -> None:
    assert problems_of({"engine": 3}) == ["test.toml: [engine]: expected a table, found integer 3"]


def test_unknown_key_without_a_close_match_lists_known_keys() -> None:
    [problem] = problems_of({"voices": {"zzz": 1}})
    assert problem == "test.toml: [voices].zzz: expected a known key of [voices], found unknown 'zzz' " \
                      "(known: default_voice)"


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.engine.nfe = 4  # type: ignore[misc]


def test_round_trip_through_dict() -> None:
    cfg = load_config(FIXTURES / "good_custom.toml")
    assert parse_config(config_to_dict(cfg), "dict") == cfg
    assert config_to_dict(cfg)["daemon"]["socket_mode"] == "0600"
    assert config_to_dict(cfg)["engine"]["vocab_file"] == ""


def test_overrides_replace_only_given_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = Config()
    cfg = apply_overrides(base, socket="api.sock", state_dir=Path("/srv/state"), model="tiny")
    assert cfg.daemon.socket == tmp_path / "api.sock"
    assert cfg.daemon.state_dir == Path("/srv/state")
    assert cfg.engine.model == "tiny"
    assert (cfg.engine.nfe, cfg.daemon.log_dir) == (base.engine.nfe, base.daemon.log_dir)
    assert base == Config()
    assert apply_overrides(base) == base


def test_model_override_accepts_names_and_checkpoint_paths(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert apply_overrides(Config(), model="F5TTS_v1_Base").engine.model == "F5TTS_v1_Base"
    assert apply_overrides(Config(), model="m.safetensors").engine.model == str(tmp_path / "m.safetensors")
    assert apply_overrides(Config(), model="random:F5TTS_v1_Base").engine.model == "random:F5TTS_v1_Base"
    expected = r"^--model: expected \"F5TTS_v1_Base\", \"tiny\", \"random:F5TTS_v1_Base\""
    with pytest.raises(ConfigError, match=expected):
        apply_overrides(Config(), model="nonsense")


def test_engine_tuning_keys_are_checked_precisely() -> None:
    cfg = parse_config({"engine": {"max_batch": 4, "compile_scope": "blocks", "devices": ["cpu", "cpu"]}}, "t")
    assert (cfg.engine.max_batch, cfg.engine.compile_scope, cfg.engine.devices) == (4, "blocks", ("cpu", "cpu"))
    assert parse_config({"engine": {"devices": "all"}}, "t").engine.devices == "all"
    assert any('[engine].devices: expected [] (one worker on device), "all"' in problem
               for problem in problems_of({"engine": {"devices": ["gpu1"]}}))
    assert any("[engine].min_frames: expected an integer <= max_frames (512), found integer 1024" in problem
               for problem in problems_of({"engine": {"max_frames": 512, "min_frames": 1024}}))


def test_the_packaged_defaults_are_the_shipped_config() -> None:
    from ishowttsd.daemon_parts import DEFAULTS_PATH

    assert DEFAULTS_PATH.read_text() == SHIPPED.read_text(), "cp config/ishowttsd.toml ishowttsd/data/ishowttsd.toml"

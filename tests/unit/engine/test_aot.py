"""compile_scope "aot": AOTInductor packages of the DiT block and input embedding (CPU, tiny model).

The packages are really built (torch.export + AOTInductor, a C++ build on CPU: ~30 s for both),
once per module; every test after the first loads them from the cache directory.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ishowttsd.engine import aot, aot_store  # noqa: E402
from ishowttsd.engine.compiled import compile_engine, warm_engine  # noqa: E402
from ishowttsd.engine.f5 import F5Engine  # noqa: E402
from ishowttsd.engine.protocol import VoiceRef  # noqa: E402
from ishowttsd.engine.spec import EngineSpec  # noqa: E402
from ishowttsd.voices import find_default_reference  # noqa: E402

TRANSCRIPT = "Some call me nature, others call me mother nature."
TEXTS = ["Hello there, chat.", "Hi."]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aot")


def spec(cache: Path, scope: str = "aot") -> EngineSpec:
    return EngineSpec(model="tiny", cache_dir=str(cache), device="cpu", dtype="fp32", compile=True,
                      compile_scope=scope, max_batch=2, max_frames=576)


def packages(cache: Path) -> list[Path]:
    return sorted((cache / "compile" / "aot").glob("*.pt2"))


def loaded(cache: Path) -> F5Engine:
    engine = F5Engine.load(spec(cache))
    compile_engine(engine, engine.spec)
    assert engine.compiled and engine.compile_error == ""
    return engine


def reference(engine: F5Engine) -> object:
    ref = engine.reference(VoiceRef("default", str(find_default_reference()), TRANSCRIPT))
    return replace(ref, mel=ref.mel[:150])


def sample(engine: F5Engine, ref: object) -> list[torch.Tensor]:
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    return engine.sample([ref, ref], TEXTS, [400, 300], 8, generators)


def test_aot_engine_samples_what_the_eager_engine_samples(cache: Path) -> None:
    engine, eager = loaded(cache), F5Engine.load(spec(cache))
    ref = reference(engine)
    warm_engine(engine, ref, lambda: None)
    assert [p.name.split("-")[0] for p in packages(cache)] == ["block", "input"]
    ours, theirs = sample(engine, ref), sample(eager, reference(eager))
    assert [mel.shape for mel in ours] == [mel.shape for mel in theirs] == [(250, 100), (150, 100)]
    for mine, eager_mel in zip(ours, theirs, strict=True):
        assert float((mine - eager_mel).norm() / eager_mel.norm()) < 1e-5


def test_a_second_boot_loads_the_packages_without_rebuilding(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(cache)  # built here when this test runs alone
    before = {p: p.stat().st_mtime_ns for p in packages(cache)}
    monkeypatch.setattr(aot_store, "export_and_package", lambda *a: pytest.fail("rebuilt a cached package"))
    loaded(cache)
    assert {p: p.stat().st_mtime_ns for p in packages(cache)} == before


def test_an_unloadable_package_is_rebuilt(cache: Path) -> None:
    loaded(cache)
    block = packages(cache)[0]
    block.write_bytes(b"not a package")
    engine = loaded(cache)
    assert block.stat().st_size > 1000
    ref = reference(engine)
    assert all(torch.isfinite(mel).all() for mel in sample(engine, ref))
    assert not list((cache / "compile" / "aot").glob("*.tmp*"))  # the build wrote through a temp file


def test_calls_outside_the_exported_ranges_run_the_original_block(cache: Path) -> None:
    engine = loaded(cache)
    dit = engine.model.transformer
    block = dit.transformer_blocks[0]
    x, t, mask, freqs = aot.block_example(dit, engine.device, engine.dtype, engine.rotary, 2, 64)  # 64 < 256 frames
    with torch.inference_mode():
        routed = block(x, t, mask=mask, rope=(freqs, None))
        aot.uninstall([block])
        original = block(x, t, mask=mask, rope=(freqs, None))
    torch.testing.assert_close(routed, original, rtol=0, atol=0)


def test_a_package_keys_on_what_its_code_depends_on(cache: Path) -> None:
    dit = F5Engine.load(spec(cache)).model.transformer
    key = aot.package_key(dit, torch.float32, torch.device("cpu"), 4, (256, 576))
    assert key == aot.package_key(dit, torch.float32, torch.device("cpu"), 4, (256, 576))
    assert key != aot.package_key(dit, torch.float16, torch.device("cpu"), 4, (256, 576))
    assert key != aot.package_key(dit, torch.float32, torch.device("cpu"), 8, (256, 576))
    assert key != aot.package_key(dit, torch.float32, torch.device("cpu"), 4, (256, 1024))


def test_aot_with_another_backend_falls_back_to_eager_with_the_reason(cache: Path) -> None:
    engine = F5Engine.load(replace(spec(cache), compile_backend="eager"))
    compile_engine(engine, engine.spec)
    assert not engine.compiled and "compiles with Inductor" in engine.compile_error


def perturbed(engine: F5Engine) -> F5Engine:
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in engine.model.transformer.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))
    return engine


def test_no_weights_are_baked_into_a_package(cache: Path) -> None:
    loaded(cache)  # the packages, built from the unperturbed checkpoint
    engine, eager = perturbed(F5Engine.load(spec(cache))), perturbed(F5Engine.load(spec(cache)))
    compile_engine(engine, engine.spec)  # loads those packages: other weights, same architecture
    ours, theirs = sample(engine, reference(engine)), sample(eager, reference(eager))
    for mine, eager_mel in zip(ours, theirs, strict=True):
        assert float((mine - eager_mel).norm() / eager_mel.norm()) < 1e-5


def test_a_package_is_loaded_here_only_after_a_check_process_loaded_it(cache: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(cache)
    assert all(aot_store.verified(p).exists() for p in packages(cache))  # written by that check
    monkeypatch.setattr(aot_store, "loads_in_a_child", lambda path: pytest.fail("checked a verified package again"))
    loaded(cache)


def test_a_package_that_crashes_its_check_process_means_scope_captured(cache: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(cache)
    block = packages(cache)[0]
    aot_store.verified(block).unlink()
    monkeypatch.setattr(aot_store, "loads_in_a_child", lambda path: f"loading {path.name} failed (exit -11)")
    engine = F5Engine.load(spec(cache))
    compile_engine(engine, engine.spec)
    assert engine.compiled and engine.compile_error == ""
    assert "aot packages unusable, scope captured instead" in engine.compile_note and "exit -11" in engine.compile_note
    assert engine.captured is not None and not block.exists()
    ref = reference(engine)
    assert all(torch.isfinite(mel).all() for mel in sample(engine, ref))
    monkeypatch.setattr(aot_store, "export_and_package", lambda *a: pytest.fail("rebuilt a rejected package"))
    again = F5Engine.load(spec(cache))
    compile_engine(again, again.spec)  # the same key again: straight to captured, no build, no check
    assert "exit -11" in again.compile_note and again.captured is not None
    aot_store.rejected(block).unlink()  # leave the cache usable for the tests after this one


def test_the_check_process_really_loads_a_package(cache: Path) -> None:
    loaded(cache)
    assert aot_store.loads_in_a_child(packages(cache)[0]) == ""
    broken = cache / "broken.pt2"
    broken.write_bytes(b"not a package")
    assert "failed in a check process" in aot_store.loads_in_a_child(broken)


def test_a_package_that_cannot_be_built_is_remembered_and_scope_captured_serves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_export(*args: object) -> None:
        raise RuntimeError("export said no")

    monkeypatch.setattr(aot_store, "export_and_package", cannot_export)
    engine = F5Engine.load(spec(tmp_path))
    compile_engine(engine, engine.spec)
    assert engine.compiled and engine.captured is not None
    assert "building block-" in engine.compile_note and "export said no" in engine.compile_note
    monkeypatch.setattr(aot_store, "export_and_package", lambda *a: pytest.fail("tried to build a rejected package"))
    again = F5Engine.load(spec(tmp_path))
    compile_engine(again, again.spec)
    assert "export said no" in again.compile_note

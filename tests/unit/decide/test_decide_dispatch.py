"""decide.dispatch: devices → workers, which worker gets a job, the engine-wide state of N slots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.dispatch import (
    SlotState,
    WorkerLoad,
    batch_key,
    engine_state,
    length_class,
    pick_worker,
    resolve_devices,
    visible_gpu_count,
)

devices = st.lists(st.sampled_from(["cpu", "cuda", "cuda:0", "cuda:1", "cuda:7"]), min_size=1, max_size=16)
keys = st.tuples(st.sampled_from([8, 16, 32]), st.integers(0, 3))
loads = st.builds(WorkerLoad, serving=st.booleans(), in_flight=st.integers(0, 20), limit=st.integers(1, 16),
                  pending_keys=st.lists(keys, max_size=4).map(tuple), batch_size=st.integers(1, 8))


@given(st.sampled_from(["auto", "cpu", "cuda:1"]), st.integers(0, 16))
def test_empty_setting_is_one_worker_on_the_default_device(default: str, gpus: int) -> None:
    assert resolve_devices((), default, gpus) == (default,)


@given(st.integers(0, 16))
def test_all_is_one_worker_per_gpu_or_one_cpu_worker(gpus: int) -> None:
    resolved = resolve_devices("all", "auto", gpus)
    assert resolved == (tuple(f"cuda:{i}" for i in range(gpus)) if gpus else ("cpu",))
    assert len(set(resolved)) == len(resolved)


@given(devices, st.integers(0, 16))
def test_a_list_is_taken_as_it_is_repeats_included(listed: list[str], gpus: int) -> None:
    assert resolve_devices(tuple(listed), "auto", gpus) == tuple(listed)


def test_cuda_visible_devices_limits_the_nvml_count() -> None:
    assert visible_gpu_count(None, 4) == 4
    assert visible_gpu_count("1,3", 4) == 2
    assert visible_gpu_count("", 4) == 0
    assert visible_gpu_count("-1", 4) == 0
    assert visible_gpu_count("0,9,1", 4) == 1  # CUDA stops at the first invalid index
    assert visible_gpu_count("GPU-8f2c,GPU-11aa", 2) == 2  # UUIDs count
    assert visible_gpu_count("0,1,2", 1) == 1


@given(st.integers(0, 10_000), st.integers(4, 400))
def test_length_class_is_monotonic_and_bounded(text_bytes: int, max_chunk: int) -> None:
    here = length_class(text_bytes, max_chunk)
    assert 0 <= here <= 3 and here <= length_class(text_bytes + 1, max_chunk)


def test_batch_key_is_nfe_and_first_chunk_class() -> None:
    assert batch_key(32, "Hi.", 135) == (32, 0)
    assert batch_key(8, "x" * 1000, 135) == (8, 3)  # long texts: the first chunk is max_chunk_bytes


@given(st.lists(loads, max_size=6), keys)
def test_pick_worker_returns_a_serving_worker_with_room_or_none(workers: list[WorkerLoad],
                                                                key: tuple[int, int]) -> None:
    chosen = pick_worker(workers, key)
    open_workers = [i for i, w in enumerate(workers) if w.serving and w.in_flight < w.limit]
    assert (chosen is None) == (not open_workers)
    if chosen is not None:
        assert chosen in open_workers


@given(st.lists(loads, min_size=1, max_size=6), keys)
def test_pick_worker_prefers_the_least_loaded_then_the_same_key_then_the_lowest_index(
        workers: list[WorkerLoad], key: tuple[int, int]) -> None:
    chosen = pick_worker(workers, key)
    if chosen is None:
        return
    best = workers[chosen]
    for index, other in enumerate(workers):
        if index == chosen or not other.has_room:
            continue
        assert best.load_class <= other.load_class
        if other.load_class == best.load_class and (key in other.pending_keys) == (key in best.pending_keys):
            assert (best.in_flight, chosen) < (other.in_flight, index)
        if other.load_class == best.load_class and key in other.pending_keys:
            assert key in best.pending_keys


def test_a_burst_fills_one_batch_per_worker() -> None:
    """16 same-key jobs, two idle workers of batch 8: 8 each, not 16 on one."""
    held: list[list[tuple[int, int]]] = [[], []]
    for _ in range(16):
        chosen = pick_worker([WorkerLoad(True, len(h), 16, tuple(h), 8) for h in held], (8, 0))
        assert chosen is not None
        held[chosen].append((8, 0))
    assert [len(h) for h in held] == [8, 8]


def test_same_key_work_joins_the_worker_already_holding_it() -> None:
    workers = [WorkerLoad(True, 3, 16, ((8, 1),), 8), WorkerLoad(True, 2, 16, ((32, 0),), 8)]
    assert pick_worker(workers, (8, 1)) == 0
    assert pick_worker(workers, (16, 0)) == 1  # no one holds it: the least loaded


def slot(state: str, serving: bool, index: int = 0, detail: str = "") -> SlotState:
    return SlotState(f"worker {index} (cpu)", state, detail, serving)


@given(st.sampled_from(["starting", "ready", "recycling", "restarting", "failed"]), st.text(max_size=20),
       st.booleans())
def test_one_slot_is_the_engine(state: str, detail: str, serving: bool) -> None:
    assert engine_state([slot(state, serving, detail=detail)]) == (state, detail)


def test_n_slots_serve_while_any_serves_and_name_the_others() -> None:
    state, detail = engine_state([slot("ready", True), slot("failed", False, 1, "no CUDA")])
    assert state == "ready" and detail == "worker 1 (cpu) out of rotation: no CUDA"
    assert engine_state([slot("recycling", True), slot("ready", True, 1)])[0] == "recycling"
    assert engine_state([slot("ready", True), slot("ready", True, 1)]) == ("ready", "")


@given(st.lists(st.sampled_from(["failed", "restarting", "starting"]), min_size=2, max_size=5))
def test_n_slots_fail_only_when_every_slot_has(states: list[str]) -> None:
    state, _ = engine_state([slot(s, False, i, "why") for i, s in enumerate(states)])
    assert (state == "failed") == all(s == "failed" for s in states)

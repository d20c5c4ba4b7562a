"""The engine section of /v1/status: engine-wide figures, the first worker's details, and every worker.

Top-level keys keep their single-worker meaning: state, detail, restarts, queue_depth, in_flight and
the job totals are engine-wide (every worker); pid, device, dtype, compiled, boot figures and the
memory readings are worker 0's. `workers` has one entry per worker slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ishowttsd.engine.handle import WorkerHandle

if TYPE_CHECKING:
    from ishowttsd.engine.client import EngineClient
    from ishowttsd.engine.slot import WorkerSlot

PONG_COUNTERS = ("batches_run", "items_run", "jobs_expired", "compiles_after_ready")


def handle_info(handle: WorkerHandle | None) -> dict[str, Any]:
    """One worker process: its Ready report and its last Pong (None where unknown)."""
    ready, pong = (handle.ready, handle.last_pong) if handle else (None, None)
    return {
        "pid": handle.pid if handle else None,
        "device": ready.device if ready else None, "dtype": ready.dtype if ready else None,
        "compiled": ready.compiled if ready else None, "compile_error": ready.compile_error if ready else "",
        "compile_note": ready.compile_note if ready else "",
        "boot_s": ready.boot_s if ready else None, "warm_s": ready.warm_s if ready else None,
        "warm_graphs": ready.warm_graphs if ready else None,
        "buckets": list(ready.buckets) if ready else [],
        "worker_rss_bytes": pong.rss_bytes if pong else None,
        "cuda_allocated_bytes": pong.cuda_allocated_bytes if pong else None,
        "cuda_reserved_bytes": pong.cuda_reserved_bytes if pong else None,
        **{key: getattr(pong, key) if pong else None for key in PONG_COUNTERS},
        "worker_jobs_cancelled": pong.jobs_cancelled if pong else None,
    }


def slot_info(client: EngineClient, slot: WorkerSlot) -> dict[str, Any]:
    """One entry of `workers`: the slot (configured device, state, restarts) and its current worker."""
    handle = slot.current
    return {
        **handle_info(handle), "index": slot.index, "configured_device": slot.device,
        "state": slot.state, "detail": slot.detail, "in_rotation": slot.state != "failed",
        "in_flight": client.admission.inflight(handle) if handle else 0,
        "jobs_finished": slot.jobs_finished, "restarts": len(slot.restarts),
        "last_restart": slot.restarts[-1][1] if slot.restarts else None,
        "standby": slot.standby.info(),
    }


def engine_info(client: EngineClient) -> dict[str, object]:
    """The engine section of /v1/status."""
    restarts = client.restarts
    waiting = len(client.admission.waiting)
    return {
        "state": client.state, "detail": client.detail,
        "model": client.spec.model, "random_weights": client.spec.random_weights, "nfe": client.spec.nfe,
        **handle_info(client.current), "max_batch": client.spec.max_batch,
        "restarts": len(restarts), "last_restart": restarts[-1][1] if restarts else None,
        "standby": client.slots[0].standby.info(),
        "queue_depth": waiting, "in_flight": len(client.admission.tickets) - waiting,
        **client.totals.as_dict(),
        "workers": [slot_info(client, slot) for slot in client.slots],
    }

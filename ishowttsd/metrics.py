"""Prometheus metrics of the daemon, in a registry of its own (never the process-global default one).

Why `tts_rtf` is a histogram and not a gauge: a gauge holds one value, the last request's, and a
scrape every 15-60 s sees only whichever request happened to finish last; every other request's
real-time factor is lost, and nothing can say "p95 RTF over the last hour". A histogram counts
every request into buckets, so `histogram_quantile(0.95, rate(tts_rtf_bucket[1h]))` gives the p95
the health report checks against the target (R8, R28). `tts_rtf_last` is kept as a gauge for a
quick look at the most recent request.

Who records what (so nothing is counted twice):
- the API (per HTTP request): tts_requests_total, tts_errors_total{cause} (every failed synthesis
  request, by error code), tts_synthesis_duration_seconds{route} (end-to-end wall time the client
  waited, queueing included), tts_audio_seconds_total{route}, tts_time_to_first_audio_seconds{route};
- the engine client (per finished job, canary included) through `observe_engine_job`: tts_rtf and
  tts_rtf_last from the worker's own compute time, so queueing under load never looks like a slow
  GPU (R22 acts on RTF), and tts_queue_wait_seconds; `observe_engine_failure` for its causes.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# 5 ms .. 30 s: time to first audio on a warm GPU is tens of ms; full-size CPU synthesis is tens of s.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75,
                   1.0, 1.5, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
# Real-time factor (synthesis seconds / audio seconds); 0.3 and 0.35 are the runbook's targets.
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
ENGINE_STATES = ("starting", "ready", "recycling", "restarting", "stopping", "stopped", "failed")
STANDBY_STATES = ("off", "none", "booting", "ready", "failed")  # engine/standby.py's Standby.state()


class Metrics:
    """All collectors of the daemon, and the methods the API, the engine client and the jobs call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_request_metrics()
        self._define_engine_metrics()
        self._define_worker_metrics()
        self._define_gpu_metrics()
        self._define_job_metrics()

    def _define_request_metrics(self) -> None:
        reg = self.registry
        self.requests = Counter("tts_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=reg)
        self.errors = Counter("tts_errors", "Failed requests by cause", ["cause"], registry=reg)
        self.synthesis_duration = Histogram("tts_synthesis_duration_seconds", "End-to-end synthesis time",
                                            ["route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.audio_seconds = Counter("tts_audio_seconds", "Seconds of audio delivered", ["route"],
                                     registry=reg)
        self.rtf = Histogram("tts_rtf", "Real-time factor per engine job (compute s / audio s)",
                             buckets=RTF_BUCKETS, registry=reg)
        self.rtf_last = Gauge("tts_rtf_last", "Real-time factor of the most recent engine job", registry=reg)
        self.first_audio = Histogram("tts_time_to_first_audio_seconds", "Request start to first audio byte",
                                     ["route"], buckets=LATENCY_BUCKETS, registry=reg)

    def _define_engine_metrics(self) -> None:
        reg = self.registry
        self.queue_wait = Histogram("tts_queue_wait_seconds", "Time a request waited for the engine",
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.queue_depth = Gauge("tts_queue_depth", "Requests waiting for the engine", registry=reg)
        self.engine_failures = Counter("tts_engine_job_failures", "Engine jobs that failed, by cause",
                                       ["cause"], registry=reg)
        self.engine_restarts = Counter("tts_engine_restarts", "Engine worker restarts by reason", ["reason"],
                                       registry=reg)
        self.engine_state = Gauge("tts_engine_state", "1 for the engine's current state, 0 for the others",
                                  ["state"], registry=reg)
        self.worker_rss = Gauge("ishowttsd_worker_rss_bytes", "Resident memory of the engine worker",
                                registry=reg)
        self.worker_cuda_allocated = Gauge("ishowttsd_worker_cuda_allocated_bytes",
                                           "CUDA memory allocated by the worker's tensors", registry=reg)
        self.worker_cuda_reserved = Gauge("ishowttsd_worker_cuda_reserved_bytes",
                                          "CUDA memory reserved by the worker's caching allocator",
                                          registry=reg)
        self.engine_compiled = Gauge("tts_engine_compiled", "1 when the last worker to start runs compiled, "
                                     "0 eager (by choice or after a compile failure)", registry=reg)
        self.compile_fallbacks = Counter("tts_engine_compile_fallbacks", "Workers that fell back to eager "
                                         "because torch.compile failed (R24)", registry=reg)
        self.batch_size = Histogram("tts_batch_size", "Items in the largest batch each finished job ran in",
                                    buckets=BATCH_BUCKETS, registry=reg)

    def _define_worker_metrics(self) -> None:
        """Per worker slot (engine.devices): label worker = slot index, device = its configured device."""
        reg, labels = self.registry, ["worker", "device"]
        self.worker_restarts = Counter("tts_engine_worker_restarts", "Worker restarts by worker and reason",
                                       [*labels, "reason"], registry=reg)
        self.worker_state = Gauge("ishowttsd_worker_state", "1 for each worker's current state, 0 for the others",
                                  [*labels, "state"], registry=reg)
        self.standby_state = Gauge("ishowttsd_standby_state",
                                   "1 for each worker slot's standby state (off, none, booting, ready, failed)",
                                   [*labels, "state"], registry=reg)
        self.worker_memory = Gauge("ishowttsd_worker_memory_bytes",
                                   "Worker memory by worker and kind (rss, cuda_allocated, cuda_reserved)",
                                   [*labels, "kind"], registry=reg)

    def _define_gpu_metrics(self) -> None:
        reg = self.registry
        self.gpu_utilization = Gauge("gpu_utilization_percent", "GPU busy percentage", ["device"],
                                     registry=reg)
        self.gpu_memory_used = Gauge("gpu_memory_used_bytes", "GPU memory in use", ["device"], registry=reg)
        self.gpu_clock_locked = Gauge("gpu_clock_locked", "1 when the GPU clock lock reads back as applied",
                                      ["device"], registry=reg)
        self.gpu_clock_drift = Counter("gpu_clock_drift", "Times the clock lock was found lost, re-applied",
                                       ["device"], registry=reg)
        self.gpu_temperature = Gauge("gpu_temperature_celsius", "Temperature by sensor", ["device", "sensor"],
                                     registry=reg)
        self.gpu_throttle = Gauge("gpu_throttle_reasons", "1 while a throttle reason is active",
                                  ["device", "reason"], registry=reg)

    def _define_job_metrics(self) -> None:
        reg = self.registry
        self.job_last_success = Gauge("ishowttsd_job_last_success_timestamp_seconds",
                                      "Unix time of each job's last successful run", ["job"], registry=reg)
        self.job_runs = Counter("ishowttsd_job_runs", "Job runs by result", ["job", "result"], registry=reg)

    # --- requests -------------------------------------------------------------------------------
    def observe_request(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()

    def observe_error(self, cause: str) -> None:
        self.errors.labels(cause=cause).inc()

    def observe_synthesis(self, route: str, audio_s: float, synth_s: float) -> None:
        """One synthesis request answered in full: its end-to-end wall time and the audio it delivered."""
        self.synthesis_duration.labels(route=route).observe(synth_s)
        self.audio_seconds.labels(route=route).inc(audio_s)

    def observe_time_to_first_audio(self, route: str, seconds: float) -> None:
        self.first_audio.labels(route=route).observe(seconds)

    # --- engine ---------------------------------------------------------------------------------
    def observe_engine_job(self, audio_s: float, compute_s: float, queue_wait_s: float) -> None:
        """A finished engine job (EngineEvents.job_finished): RTF from compute time, and the queue wait."""
        self.queue_wait.observe(queue_wait_s)
        if audio_s > 0:
            self.rtf.observe(compute_s / audio_s)
            self.rtf_last.set(compute_s / audio_s)

    def observe_engine_failure(self, cause: str) -> None:
        self.engine_failures.labels(cause=cause).inc()

    def observe_queue_wait(self, seconds: float) -> None:
        self.queue_wait.observe(seconds)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def observe_worker_ready(self, compiled: bool, compile_error: str) -> None:
        self.engine_compiled.set(1 if compiled else 0)
        if compile_error:
            self.compile_fallbacks.inc()

    def observe_batch_size(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_engine_restart(self, reason: str) -> None:
        self.engine_restarts.labels(reason=reason).inc()

    def set_engine_state(self, state: str) -> None:
        """Mark `state` 1 and every other known state 0 (an unknown state is added as it comes)."""
        for known in {*ENGINE_STATES, state}:
            self.engine_state.labels(state=known).set(1 if known == state else 0)

    def set_worker_memory(self, rss_bytes: int, cuda_allocated_bytes: int = 0,
                          cuda_reserved_bytes: int = 0) -> None:
        self.worker_rss.set(rss_bytes)
        self.worker_cuda_allocated.set(cuda_allocated_bytes)
        self.worker_cuda_reserved.set(cuda_reserved_bytes)

    def observe_worker_restart(self, worker: int, device: str, reason: str) -> None:
        self.worker_restarts.labels(worker=str(worker), device=device, reason=reason).inc()

    def set_worker_state(self, worker: int, device: str, state: str) -> None:
        for known in {*ENGINE_STATES, state}:
            self.worker_state.labels(worker=str(worker), device=device, state=known).set(1 if known == state else 0)

    def set_standby_state(self, worker: int, device: str, state: str) -> None:
        for known in STANDBY_STATES:
            self.standby_state.labels(worker=str(worker), device=device, state=known).set(1 if known == state else 0)

    def set_worker_slot_memory(self, worker: int, device: str, memory_by_kind: Mapping[str, int]) -> None:
        """Known readings of one worker slot's process (kind: rss, cuda_allocated, cuda_reserved)."""
        for kind, value in memory_by_kind.items():
            self.worker_memory.labels(worker=str(worker), device=device, kind=kind).set(value)

    # --- hardware -------------------------------------------------------------------------------
    def set_gpu_usage(self, device: str, utilization_percent: float, memory_used_bytes: int) -> None:
        self.gpu_utilization.labels(device=device).set(utilization_percent)
        self.gpu_memory_used.labels(device=device).set(memory_used_bytes)

    def set_gpu_temperatures(self, device: str, celsius_by_sensor: Mapping[str, float]) -> None:
        for sensor, celsius in celsius_by_sensor.items():
            self.gpu_temperature.labels(device=device, sensor=sensor).set(celsius)

    def set_gpu_throttle_reasons(self, device: str, active_by_reason: Mapping[str, bool]) -> None:
        for reason, active in active_by_reason.items():
            self.gpu_throttle.labels(device=device, reason=reason).set(1 if active else 0)

    def set_clock_locked(self, device: str, locked: bool) -> None:
        self.gpu_clock_locked.labels(device=device).set(1 if locked else 0)

    def observe_clock_drift(self, device: str) -> None:
        self.gpu_clock_drift.labels(device=device).inc()

    # --- jobs -----------------------------------------------------------------------------------
    def observe_job_run(self, job: str, result: str, finished_at: float) -> None:
        """Count a scheduled job's run; result "success" also stamps its last-success time."""
        self.job_runs.labels(job=job, result=result).inc()
        if result == "success":
            self.job_last_success.labels(job=job).set(finished_at)

    # --- reading --------------------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, object]]:
        """Request counts by route and status, and error counts by cause, for /v1/status."""
        requests: dict[str, dict[str, int]] = {}
        for labels, value in _samples(self.requests, "tts_requests_total"):
            requests.setdefault(labels["route"], {})[labels["status"]] = int(value)
        errors = {labels["cause"]: int(value) for labels, value in _samples(self.errors, "tts_errors_total")}
        return {"requests": dict(requests), "errors": errors}

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _samples(metric: Counter, sample_name: str) -> list[tuple[dict[str, str], float]]:
    return [(sample.labels, sample.value) for family in metric.collect() for sample in family.samples
            if sample.name == sample_name]

"""Metrics: own registry, the runbook's six metrics and the extras, rendering, status counters."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ishowttsd.metrics import ENGINE_STATES, Metrics


def families(metrics: Metrics) -> dict[str, object]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def sample_value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_runbook_six_and_the_extras_are_exposed() -> None:
    names = set(families(Metrics()))
    six = {
        "tts_synthesis_duration_seconds",
        "tts_rtf",
        "tts_requests",
        "tts_errors",
        "gpu_utilization_percent",
        "gpu_memory_used_bytes",
    }
    extras = {
        "tts_rtf_last",
        "tts_audio_seconds",
        "tts_engine_job_failures",
        "tts_time_to_first_audio_seconds",
        "tts_queue_wait_seconds",
        "tts_queue_depth",
        "tts_engine_restarts",
        "tts_engine_state",
        "gpu_clock_locked",
        "gpu_clock_drift",
        "gpu_temperature_celsius",
        "gpu_throttle_reasons",
        "ishowttsd_job_last_success_timestamp_seconds",
        "ishowttsd_job_runs",
        "ishowttsd_worker_rss_bytes",
        "ishowttsd_worker_cuda_allocated_bytes",
        "ishowttsd_worker_cuda_reserved_bytes",
    }
    assert six | extras <= names


def test_each_instance_has_its_own_registry_not_the_default_one() -> None:
    first, second = Metrics(), Metrics()
    first.observe_error("queue_full")
    assert sample_value(first, "tts_errors_total", cause="queue_full") == 1
    assert sample_value(second, "tts_errors_total", cause="queue_full") is None
    assert REGISTRY.get_sample_value("tts_errors_total", {"cause": "queue_full"}) is None


def test_observe_synthesis_records_end_to_end_time_and_audio_delivered() -> None:
    metrics = Metrics()
    metrics.observe_synthesis("/v1/tts", audio_s=4.0, synth_s=1.0)
    metrics.observe_synthesis("/v1/tts", audio_s=2.0, synth_s=0.2)
    assert sample_value(metrics, "tts_synthesis_duration_seconds_count", route="/v1/tts") == 2
    assert sample_value(metrics, "tts_synthesis_duration_seconds_sum", route="/v1/tts") == 1.2
    assert sample_value(metrics, "tts_audio_seconds_total", route="/v1/tts") == 6.0
    assert sample_value(metrics, "tts_rtf_count") == 0  # RTF comes from engine compute time only


def test_engine_jobs_feed_rtf_histogram_last_gauge_and_queue_wait() -> None:
    metrics = Metrics()
    metrics.observe_engine_job(audio_s=4.0, compute_s=1.0, queue_wait_s=0.5)
    metrics.observe_engine_job(audio_s=2.0, compute_s=0.2, queue_wait_s=0.0)
    assert sample_value(metrics, "tts_rtf_count") == 2
    assert sample_value(metrics, "tts_rtf_bucket", le="0.1") == 1
    assert sample_value(metrics, "tts_rtf_bucket", le="0.25") == 2
    assert sample_value(metrics, "tts_rtf_last") == 0.1
    assert sample_value(metrics, "tts_queue_wait_seconds_count") == 2


def test_engine_job_without_audio_records_no_rtf() -> None:
    metrics = Metrics()
    metrics.observe_engine_job(audio_s=0.0, compute_s=0.5, queue_wait_s=0.1)
    metrics.observe_engine_failure("worker_lost")
    assert sample_value(metrics, "tts_rtf_count") == 0
    assert sample_value(metrics, "tts_engine_job_failures_total", cause="worker_lost") == 1


def test_latency_buckets_span_5ms_to_30s() -> None:
    metrics = Metrics()
    metrics.observe_queue_wait(0.004)
    metrics.observe_queue_wait(29.0)
    assert sample_value(metrics, "tts_queue_wait_seconds_bucket", le="0.005") == 1
    assert sample_value(metrics, "tts_queue_wait_seconds_bucket", le="30.0") == 2


def test_engine_state_is_one_hot() -> None:
    metrics = Metrics()
    metrics.set_engine_state("starting")
    metrics.set_engine_state("ready")
    values = {state: sample_value(metrics, "tts_engine_state", state=state) for state in ENGINE_STATES}
    assert values.pop("ready") == 1 and set(values.values()) == {0}


def test_hardware_and_worker_gauges() -> None:
    metrics = Metrics()
    metrics.set_gpu_usage("cuda:0", 87.5, 3 * 2**30)
    metrics.set_gpu_temperatures("cuda:0", {"gpu": 61.0, "memory": 70.0})
    metrics.set_gpu_throttle_reasons("cuda:0", {"sw_thermal": True, "hw_slowdown": False})
    metrics.set_clock_locked("cuda:0", False)
    metrics.observe_clock_drift("cuda:0")
    metrics.set_worker_memory(500_000_000, 1_000, 2_000)
    assert sample_value(metrics, "gpu_utilization_percent", device="cuda:0") == 87.5
    assert sample_value(metrics, "gpu_memory_used_bytes", device="cuda:0") == 3 * 2**30
    assert sample_value(metrics, "gpu_temperature_celsius", device="cuda:0", sensor="memory") == 70.0
    assert sample_value(metrics, "gpu_throttle_reasons", device="cuda:0", reason="sw_thermal") == 1
    assert sample_value(metrics, "gpu_throttle_reasons", device="cuda:0", reason="hw_slowdown") == 0
    assert sample_value(metrics, "gpu_clock_locked", device="cuda:0") == 0
    assert sample_value(metrics, "gpu_clock_drift_total", device="cuda:0") == 1
    assert sample_value(metrics, "ishowttsd_worker_cuda_reserved_bytes") == 2_000


def test_job_runs_count_results_and_stamp_only_successes() -> None:
    metrics = Metrics()
    metrics.observe_job_run("backup", "success", finished_at=1_700_000_000.0)
    metrics.observe_job_run("backup", "failure", finished_at=1_700_000_500.0)
    assert sample_value(metrics, "ishowttsd_job_runs_total", job="backup", result="success") == 1
    assert sample_value(metrics, "ishowttsd_job_runs_total", job="backup", result="failure") == 1
    assert (
        sample_value(metrics, "ishowttsd_job_last_success_timestamp_seconds", job="backup") == 1_700_000_000.0
    )


def test_engine_restarts_and_queue_depth() -> None:
    metrics = Metrics()
    metrics.observe_engine_restart("leak")
    metrics.set_queue_depth(3)
    metrics.observe_time_to_first_audio("/v1/tts", 0.04)
    assert sample_value(metrics, "tts_engine_restarts_total", reason="leak") == 1
    assert sample_value(metrics, "tts_queue_depth") == 3
    assert sample_value(metrics, "tts_time_to_first_audio_seconds_count", route="/v1/tts") == 1


def test_counters_summarise_requests_by_route_and_status_and_errors_by_cause() -> None:
    metrics = Metrics()
    for status in (200, 200, 429):
        metrics.observe_request("/v1/tts", status)
    metrics.observe_request("/healthz", 200)
    metrics.observe_error("queue_full")
    assert metrics.counters() == {
        "requests": {"/v1/tts": {"200": 2, "429": 1}, "/healthz": {"200": 1}},
        "errors": {"queue_full": 1},
    }


def test_compile_state_fallbacks_and_batch_sizes() -> None:
    metrics = Metrics()
    metrics.observe_worker_ready(True, "")
    assert sample_value(metrics, "tts_engine_compiled") == 1
    assert sample_value(metrics, "tts_engine_compile_fallbacks_total") == 0
    metrics.observe_worker_ready(False, "torch.compile failed: BackendCompilerFailed")
    assert sample_value(metrics, "tts_engine_compiled") == 0
    assert sample_value(metrics, "tts_engine_compile_fallbacks_total") == 1
    for size in (1, 8, 8, 30):
        metrics.observe_batch_size(size)
    assert sample_value(metrics, "tts_batch_size_count") == 4
    assert sample_value(metrics, "tts_batch_size_bucket", le="8.0") == 3

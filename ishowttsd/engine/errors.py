"""Errors the engine client raises to the API layer (no torch here)."""

from __future__ import annotations


class EngineUnavailable(Exception):
    """The engine cannot take work now (starting, restarting, crashed mid-job): HTTP 503 + Retry-After."""

    def __init__(self, reason: str, retry_after_s: float = 2.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class QueueFull(Exception):
    """Admission refused: too many requests waiting. HTTP 429 + Retry-After."""

    def __init__(self, depth: int, retry_after_s: float = 2.0) -> None:
        super().__init__(f"queue full ({depth} waiting)")
        self.depth = depth
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The request's deadline passed before its audio was done: HTTP 504."""


class SynthesisRejected(Exception):
    """The worker refused this input (e.g. text it cannot tokenize): HTTP 422."""


class SynthesisFailed(Exception):
    """The engine failed on this job for an internal reason: HTTP 503 + Retry-After."""

    def __init__(self, reason: str, retry_after_s: float = 2.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s

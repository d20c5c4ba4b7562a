"""Objective quality check (R21, R23): log-mel distance between two renderings of the same text.

Pure numpy; the quality job renders NFE 8 vs NFE 32 (same seed) and compares the mels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# f5-tts and vocos build log-mels as log(clamp(mel, min=1e-5)).
LOG_FLOOR = 1e-5


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    """ok when distance <= threshold; margin = threshold - distance (negative when flagged)."""

    ok: bool
    distance: float
    threshold: float
    margin: float
    message: str


def compare_quality(distance: float, threshold: float) -> QualityVerdict:
    """Flag a distance above `threshold`; a NaN/infinite distance is always flagged."""
    ok = math.isfinite(distance) and distance <= threshold
    verdict = "within" if ok else "above"
    message = f"log-mel distance {distance:.3f} {verdict} threshold {threshold:.3f}"
    return QualityVerdict(ok, distance, threshold, threshold - distance, message)


def _as_mel(mel: ArrayLike, is_log: bool) -> np.ndarray:
    """A 2-D float64 log-mel (n_mels, frames); linear magnitudes are logged with LOG_FLOOR."""
    arr = np.asarray(mel, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D mel (n_mels, frames), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("mel contains NaN or infinite values")
    return arr if is_log else np.log(np.maximum(arr, LOG_FLOOR))


def log_mel_distance(
    mel_a: ArrayLike, mel_b: ArrayLike, *, is_log: bool = True, time_axis: int = -1
) -> float:
    """Mean absolute difference of two log-mels after cutting both to the shorter length.

    Inputs are (n_mels, frames) with frames on `time_axis` (pass 0 for f5-tts's (frames, n_mels)).
    `is_log=False` takes linear mel magnitudes and logs them first.
    """
    a = np.moveaxis(_as_mel(mel_a, is_log), time_axis, -1)
    b = np.moveaxis(_as_mel(mel_b, is_log), time_axis, -1)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"mel bins differ: {a.shape[0]} != {b.shape[0]}")
    frames = min(a.shape[1], b.shape[1])
    return float(np.mean(np.abs(a[:, :frames] - b[:, :frames])))

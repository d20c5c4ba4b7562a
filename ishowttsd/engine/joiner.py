"""Cross-fade joining of generated audio pieces, usable while streaming (numpy only, no torch)."""

from __future__ import annotations

import numpy as np


class CrossfadeJoiner:
    """Joins consecutive pieces with a linear cross-fade of `overlap` samples.

    push() returns the audio that is final now; the last `overlap` samples of each piece are held
    back until the next piece (or finish()) decides how they blend. Total length equals the plain
    concatenation minus one overlap per join, as in f5-tts's infer_batch_process.
    """

    def __init__(self, overlap: int) -> None:
        self.overlap = max(0, overlap)
        self._tail = np.zeros(0, dtype=np.float32)
        self._pieces = 0

    def push(self, piece: np.ndarray) -> np.ndarray:
        piece = self._joined(piece)
        keep = min(self.overlap, len(piece))
        ready, self._tail = piece[: len(piece) - keep], piece[len(piece) - keep :]
        return ready

    def finish(self) -> np.ndarray:
        tail, self._tail = self._tail, np.zeros(0, dtype=np.float32)
        return tail

    def push_last(self, piece: np.ndarray) -> np.ndarray:
        """push(piece) then finish() as one array, without copying the two back together."""
        joined = self._joined(piece)
        self._tail = np.zeros(0, dtype=np.float32)
        return joined

    def _joined(self, piece: np.ndarray) -> np.ndarray:
        """`piece` as float32 samples, blended with the held-back tail of the previous one."""
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        if self._pieces:
            piece = self._blend(piece)
        self._pieces += 1
        return piece

    def _blend(self, piece: np.ndarray) -> np.ndarray:
        n = min(len(self._tail), len(piece))
        if n == 0:
            return np.concatenate([self._tail, piece])
        fade_in = np.linspace(0.0, 1.0, n, dtype=np.float32)
        mixed = self._tail[-n:] * (1.0 - fade_in) + piece[:n] * fade_in
        return np.concatenate([self._tail[:-n], mixed, piece[n:]])


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] → 16-bit little-endian PCM bytes (clipped). Scaled in place in the
    clipped copy: one float buffer instead of two (a third of the time, measured)."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    scaled *= np.float32(32767.0)
    return scaled.astype("<i2").tobytes()

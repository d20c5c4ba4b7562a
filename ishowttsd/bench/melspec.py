"""Log-mel spectrograms of 16-bit PCM in numpy (no torch), for objective quality comparisons."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE, N_FFT, HOP, N_MELS = 24_000, 1024, 256, 100
LOG_FLOOR = 1e-5


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters from 0 Hz to Nyquist."""
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(rate / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(pcm: bytes) -> np.ndarray:
    """(n_mels, frames) natural-log mel magnitudes of 24 kHz 16-bit mono PCM."""
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    if len(audio) < N_FFT:
        audio = np.pad(audio, (0, N_FFT - len(audio)))
    audio = np.pad(audio, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = 1 + (len(audio) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(audio[index] * np.hanning(N_FFT)[None, :], axis=1))
    return np.log(np.maximum(mel_filterbank() @ spectrum.T, LOG_FLOOR))

"""A torch profiler trace over the next few batches the worker runs (R18), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class TraceRecorder:
    """Starts profiling at once; `batch_done()` returns True when the trace has been written."""

    def __init__(self, path: str, batches: int) -> None:
        self.path, self.remaining = Path(path), max(1, batches)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profile: Any = torch.profiler.profile(activities=activities, record_shapes=True)
        self._profile.__enter__()

    def batch_done(self) -> bool:
        self.remaining -= 1
        if self.remaining > 0:
            return False
        self._profile.__exit__(None, None, None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        self._profile.export_chrome_trace(str(partial))
        os.replace(partial, self.path)
        return True

"""Padded batch shapes (no torch): the buckets a compiled engine serves and one batch's layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Layout:
    """How one batch is laid out: `count` items padded to `rows` rows of `width` frames."""

    count: int
    rows: int
    width: int
    lens: list[int]  # reference frames per row
    totals: list[int]  # reference + generated frames per row
    compiled: bool

    @property
    def exact(self) -> bool:
        """One unpadded item (eager only): runs without masks, bit-identical to f5-tts's own path."""
        return not self.compiled and self.rows == 1 and self.width == self.totals[0]

    def padded(self, items: list[T]) -> list[T]:
        return items + items[:1] * (self.rows - self.count)


@dataclass(frozen=True)
class Shapes:
    """The padded shapes a compiled engine runs: frame-width buckets × batch-row buckets."""

    widths: tuple[int, ...]
    rows: tuple[int, ...]

"""PNG plot of the benchmark history (matplotlib's object API on the Agg canvas: no pyplot state).

matplotlib is optional (the "plot" extra): without it `render_history_png` returns None.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

from ishowttsd.decide.regression import comparison_key


def _series(history: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs grouped by comparison key (model, device, nfe, compiled), each oldest first."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in history:
        model, device, nfe, compiled = comparison_key(run)
        label = f"{model} {device} nfe {nfe}{' compiled' if compiled else ''}"
        groups.setdefault(label, []).append(run)
    return groups


def _when(run: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(run.get("timestamp_s", 0.0)))


def _draw(axes: Any, history: Sequence[Mapping[str, Any]], target_rtf: float) -> None:
    for label, runs in _series(history).items():
        axes.plot([_when(r) for r in runs], [float(r["rtf_mean"]) for r in runs], marker="o", label=label)
        bad = [r for r in runs if r.get("regression")]
        axes.scatter([_when(r) for r in bad], [float(r["rtf_mean"]) for r in bad], marker="x", s=80,
                     color="red")
    axes.axhline(target_rtf, linestyle="--", color="grey", label=f"target rtf {target_rtf:g}")
    axes.set(title="ishowttsd benchmark history", ylabel="mean RTF (lower is better)")
    axes.legend(fontsize="small")


def render_history_png(history: Sequence[Mapping[str, Any]], target_rtf: float) -> bytes | None:
    """Mean RTF over time per comparable series, regressions marked, the target as a dashed line."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    _draw(figure.add_subplot(), history, target_rtf)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

"""The one plotter of loss against step: a sweep's jobs, the lecture's progression, the tools' pages.

A figure is a list of Curves; a curve over several seeds is their mean with the spread as a band.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from shakegpt.common.atomic import save_figure


@dataclass
class Curve:
    label: str
    points: dict[int, float]  # {step: loss}
    band: tuple[dict[int, float], dict[int, float]] | None = None  # (low, high) per step: the seeds' spread
    reference: float | None = None  # a figure to compare the end with (the lecture's), a star at the last step
    linestyle: str = "-"
    marker: str | None = "."
    linewidth: float = 1.5
    same_colour_as_previous: bool = False  # a training curve drawn beside its validation curve


def mean_of_seeds(label: str, curves: list[dict[int, float]], **style) -> Curve:
    """The mean over seeds at the steps every seed logged, the band from their minimum to maximum."""
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    values = {step: [curve[step] for curve in curves] for step in steps}
    band = ({s: min(v) for s, v in values.items()}, {s: max(v) for s, v in values.items()}) if len(curves) > 1 else None
    return Curve(label, {s: statistics.mean(v) for s, v in values.items()}, band, **style)


def plot_curves(
    curves: list[Curve],
    path: Path,
    title: str,
    ylabel: str = "validation loss",
    ylim: tuple[float | None, float | None] = (None, None),
    reference_label: str | None = None,
    legend_columns: int = 1,
) -> None:
    """Every curve on one figure, written to path (PNG) atomically."""
    save_figure(curves_figure(curves, title, ylabel, ylim, reference_label, legend_columns), path)


def curves_figure(
    curves: list[Curve],
    title: str,
    ylabel: str = "validation loss",
    ylim: tuple[float | None, float | None] = (None, None),
    reference_label: str | None = None,
    legend_columns: int = 1,
):
    """Every curve on one matplotlib Figure (Agg, outside pyplot: a notebook shows it, a script
    saves it, and pyplot's backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colour = None
    for curve in curves:
        steps = sorted(curve.points)
        colour = colour if curve.same_colour_as_previous else None
        (line,) = ax.plot(steps, [curve.points[s] for s in steps], linestyle=curve.linestyle, marker=curve.marker,
                          markersize=4, linewidth=curve.linewidth, color=colour, label=curve.label)
        colour = line.get_color()
        if curve.band is not None:
            low, high = curve.band
            ax.fill_between(steps, [low[s] for s in steps], [high[s] for s in steps], color=colour, alpha=0.15)
        if curve.reference is not None:
            ax.plot([steps[-1]], [curve.reference], marker="*", markersize=13, color=colour, markeredgecolor="black")
    if reference_label:
        ax.plot([], [], "k*", markersize=11, linestyle="none", label=reference_label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=legend_columns)
    fig.tight_layout()
    return fig

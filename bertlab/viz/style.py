"""The course's one plot style: a palette, two colour maps, and one way to show a figure.

Every picture in the course is drawn under :data:`STYLE`: the bertlab plot functions apply it to
the figures they build (without touching your own rcParams), and ``bertlab.setup()`` makes it the
default for plain matplotlib cells too (:func:`use_style`).
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["ATTENTION_CMAP", "ENTROPY_CMAP", "PALETTE", "STYLE", "annotate_cells", "colours",
           "new_figure", "styled", "use_style"]

# One palette for every figure: lines, bars, the viewer's heads and the ablation's variants.
PALETTE = [
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
    "#da8bc3", "#5f6b7a", "#b5a33a", "#3fa7c4", "#2f8f6f", "#e0576f",
]
ATTENTION_CMAP = "Blues"  # weights and shares in [0, 1]
ENTROPY_CMAP = "viridis"  # entropies, on their own scale
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "figure.figsize": (6.4, 3.6),
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": plt.cycler(color=PALETTE),
    "axes.grid": False,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def colours(n: int) -> list[str]:
    """``n`` distinct colours as hex strings: the palette, or ``n`` evenly spaced hues when
    ``n`` is more than its 12."""
    if n <= len(PALETTE):
        return PALETTE[:n]
    return ["#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in
                                           colorsys.hls_to_rgb(i / n, 0.48, 0.6)))
            for i in range(n)]


def use_style() -> None:
    """Make :data:`STYLE` matplotlib's default (``bertlab.setup()`` calls this)."""
    plt.rcParams.update(STYLE)


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the course style without touching the user's rcParams."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
               **kwargs) -> tuple[Figure, np.ndarray]:
    """A pyplot figure and a 2-D array of its axes, laid out without overlaps.

    Like any matplotlib figure it reaches the notebook through ``plt.show()``: the course's one
    convention is that every cell that draws ends with ``plt.show()``.
    """
    return plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained",
                        **kwargs)


def annotate_cells(ax: Axes, values: np.ndarray, image, digits: int) -> None:
    """Write each value in its cell, white on dark cells."""
    for (row, col), value in np.ndenumerate(values):
        if np.isnan(value):
            continue
        dark = image.norm(value) > 0.6  # white text on dark cells
        ax.text(col, row, f"{value:.{digits}f}", ha="center", va="center", fontsize=6,
                color="white" if dark else "#222222")

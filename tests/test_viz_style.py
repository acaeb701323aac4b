"""bertlab.viz.style: one palette and one style for every figure, figures that show once."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bertlab import viz  # noqa: E402
from bertlab.viz.style import (  # noqa: E402
    PALETTE,
    STYLE,
    annotate_cells,
    colours,
    new_figure,
    styled,
    use_style,
)


@pytest.fixture(autouse=True)
def own_rcparams():
    """Whatever a test does to matplotlib's defaults is undone after it."""
    with matplotlib.rc_context():
        yield


def test_palette_first_then_distinct_hex_colours():
    assert colours(0) == []
    assert colours(3) == PALETTE[:3]
    assert colours(len(PALETTE)) == PALETTE
    for n in (len(PALETTE) + 1, 16, 24, 100):
        many = colours(n)
        assert len(many) == len(set(many)) == n
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in many), many
    assert len(set(PALETTE)) == len(PALETTE)
    assert viz.colours is colours and viz.PALETTE is PALETTE


def test_use_style_makes_the_course_style_the_default():
    plt.rcParams["axes.spines.top"] = True
    plt.rcParams["font.size"] = 14
    use_style()
    for key, value in STYLE.items():
        assert plt.rcParams[key] == (list(value) if isinstance(value, tuple) else value), key
    cycle = [c["color"] for c in plt.rcParams["axes.prop_cycle"]]
    assert cycle == PALETTE


def test_styled_draws_in_the_style_and_leaves_the_users_settings_alone():
    plt.rcParams["font.size"] = 14
    plt.rcParams["axes.prop_cycle"] = plt.cycler(color=["#000000"])

    @styled
    def draw() -> Figure:
        fig, axes = new_figure(figsize=(3, 2))
        axes[0, 0].plot([0, 1], [1, 0])
        return fig

    fig = draw()
    ax = fig.axes[0]
    assert mcolors.to_hex(ax.lines[0].get_color()) == PALETTE[0]
    assert not ax.spines["top"].get_visible()
    assert ax.title.get_fontsize() == STYLE["axes.titlesize"]
    assert plt.rcParams["font.size"] == 14  # the user's own defaults, as they were
    assert [c["color"] for c in plt.rcParams["axes.prop_cycle"]] == ["#000000"]
    assert draw.__name__ == "draw"


def test_new_figure_is_a_pyplot_figure_that_plt_show_shows():
    fig, axes = new_figure(2, 3, figsize=(6, 4))
    assert isinstance(fig, Figure) and axes.shape == (2, 3)
    assert fig.number in plt.get_fignums()  # a cell ending in plt.show() shows it
    _, single = new_figure(figsize=(2, 2))
    assert single.shape == (1, 1)  # always a 2-D array of axes
    plt.close("all")


def test_annotate_cells_writes_each_value_white_on_dark():
    fig, axes = new_figure(figsize=(3, 3))
    ax = axes[0, 0]
    values = np.array([[0.1, 0.9], [np.nan, 0.5]])
    image = ax.imshow(values, vmin=0, vmax=1)
    annotate_cells(ax, values, image, digits=2)
    texts = {t.get_position(): t for t in ax.texts}
    assert sorted(t.get_text() for t in ax.texts) == ["0.10", "0.50", "0.90"]  # NaN: no text
    assert mcolors.to_hex(texts[(1, 0)].get_color()) == "#ffffff"  # 0.9: a dark cell
    assert mcolors.to_hex(texts[(0, 0)].get_color()) == "#222222"
    assert mcolors.to_hex(texts[(1, 1)].get_color()) == "#222222"

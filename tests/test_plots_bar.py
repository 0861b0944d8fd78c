"""The bar chart: plain and grouped, saved where the figures go."""

import pytest

from cachelab import plots


def test_plain_bars_are_drawn_and_saved(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    fig = plots.bar_chart({"node a": 10, "node b": 12}, ylabel="keys", title="Keys per node", save_as="bars")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [10, 12]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["node a", "node b"]
    assert (tmp_path / "bars.png").exists()


def test_grouped_bars_fill_missing_categories_with_zero():
    fig = plots.bar_chart({"x": {"a": 1, "b": 2}, "y": {"b": 3}}, ylabel="n", logy=False, percent=False)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [1, 2, 0, 3]
    assert fig.axes[0].get_legend() is not None


def test_empty_is_refused():
    with pytest.raises(ValueError):
        plots.bar_chart({}, ylabel="n")

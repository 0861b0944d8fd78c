"""The plots of notebook 05: bar panels side by side, shares against an even split, a rolling hit ratio."""

import pytest

from cachelab import plots


def test_bar_panels_draw_one_bar_chart_each_and_save(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    counts = {"private": {"1": 18, "4": 48}, "shared": {"1": 18, "4": 25}}
    seconds = {"private": {"1": 1.0, "4": 2.5}, "shared": {"1": 1.0, "4": 1.4}}
    fig = plots.bar_panels({"Queries": (counts, "queries"), "Time": (seconds, "s")}, save_as="panels")
    left, right = fig.axes
    assert [p.get_height() for p in left.patches] == [18, 48, 18, 25]
    assert left.get_title() == "Queries" and right.get_ylabel() == "s"
    assert (tmp_path / "panels.png").exists()
    with pytest.raises(ValueError):
        plots.bar_panels({})


def test_even_split_chart_draws_the_even_split():
    fig = plots.even_split_chart({"a": 30, "b": 36, "c": 33}, ylabel="keys", title="Keys per node")
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [30, 36, 33]
    (line,) = ax.get_lines()
    assert line.get_ydata()[0] == pytest.approx(33) and line.get_label() == "an even split"
    with pytest.raises(ValueError):
        plots.even_split_chart({}, ylabel="keys")


def test_rolling_ratio_chart_averages_over_the_window_and_shades_a_span():
    outcomes = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    fig = plots.rolling_ratio_chart(outcomes, 4, ylabel="hit ratio", shade=(4, 8, "node stopped"))
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [4, 5, 6, 7, 8, 9, 10]
    assert list(line.get_ydata()) == pytest.approx([1, 0.75, 0.5, 0.25, 0, 0.25, 0.5])
    assert "node stopped" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError):
        plots.rolling_ratio_chart([1, 0], 3, ylabel="hit ratio")


def test_marked_panels_draw_marks_and_refuse_unknown_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    panel = {"x": [1, 2, 3], "curves": {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.1]}, "xlabel": "x", "ylabel": "y",
             "percent": True, "marks": {"the scan": 2}}
    fig = plots.marked_panels([panel, {**panel, "marks": {"": 1}, "yformat": lambda v: f"{v:.0%}"}], sharey=True,
                             save_as="two")
    assert len(fig.axes) == 2 and (tmp_path / "two.png").exists()
    assert "the scan" in [line.get_label() for line in fig.axes[0].get_lines()]
    with pytest.raises(ValueError, match="unknown keys"):
        plots.marked_panels([{**panel, "colour": "red"}])
    with pytest.raises(ValueError, match="at least one panel"):
        plots.marked_panels([])

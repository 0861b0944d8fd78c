"""The plots of notebooks 00-02: rank against frequency, curves in panels, a hit-ratio curve and its knee."""

import pytest

from cachelab import plots


def test_rank_frequency_chart_draws_the_counts_on_log_axes_and_marks_half(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    fig = plots.rank_frequency_chart([50, 20, 10, 5, 1], half=2, title="Ranks", save_as="ranks")
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    curve, marker = ax.get_lines()
    assert list(curve.get_ydata()) == [50, 20, 10, 5, 1] and list(marker.get_xdata()) == [2, 2]
    assert (tmp_path / "ranks.png").exists()
    with pytest.raises(ValueError):
        plots.rank_frequency_chart([1, 5])  # not sorted from the most requested down
    with pytest.raises(ValueError):
        plots.rank_frequency_chart([])


def test_curve_panels_draw_one_curve_chart_per_panel():
    fig = plots.curve_panels([1, 2, 3], {"Calls": {"curves": {"a": [1, 10, 100]}, "ylabel": "calls", "logy": True},
                                         "Time": {"curves": {"a": [5, 6, 7], "b": [1, 2, 3]}, "ylabel": "ns"}},
                             xlabel="hours")
    left, right = fig.axes
    assert left.get_title() == "Calls" and left.get_yscale() == "log" and right.get_ylabel() == "ns"
    assert len(right.get_lines()) == 2 and left.get_xlabel() == right.get_xlabel() == "hours"
    with pytest.raises(ValueError):
        plots.curve_panels([1], {}, xlabel="x")


def test_knee_chart_marks_the_knee_on_the_linear_panel():
    fig = plots.knee_chart([64, 128, 192], [0.2, 0.4, 0.45], [1, 2, 4], [0.01, 0.02, 0.04], knee=128, ceiling=0.8,
                           label="lru_cache", title="Hit ratio")
    linear, logarithmic = fig.axes
    assert linear.get_xscale() == "linear" and logarithmic.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [128, 128] for line in linear.get_lines())
    with pytest.raises(ValueError):
        plots.knee_chart([64, 128], [0.2, 0.4], [1], [0.1], knee=100)

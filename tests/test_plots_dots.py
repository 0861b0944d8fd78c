"""Dot charts on log axes, ticks in the axis unit, curves that do not hide each other, OPT on the policy plot."""

import matplotlib
import pytest

from cachelab import plots
from cachelab.timing import Timing


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    matplotlib.pyplot.close("all")


def _timings():
    many = [30e6 + 1e5 * i for i in range(11)]
    return [Timing("recompute", tuple(many)), Timing("lru_cache", (50.0, 55.0, 60.0)),
            Timing("busy", (100.0, 100.0, 200.0, 400.0, 100.0, 110.0, 90.0, 300.0, 100.0, 100.0, 120.0))]


def _tick_texts(fig, axis="x"):
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = ax.get_xticklabels(which="both") if axis == "x" else ax.get_yticklabels(which="both")
    return [t.get_text() for t in ticks if t.get_text()]


def test_a_dot_chart_draws_no_bars_and_its_whiskers_follow_the_samples(tmp_path):
    fig = plots.dot_chart(_timings(), save_as="dots")
    ax = fig.axes[0]
    assert not ax.patches, "a dot chart has no bars"
    assert ax.get_xscale() == "log"
    lines = ax.get_lines()
    # per timing: whisker, two caps, dot
    whiskers = [line.get_xdata() for line in lines[0::4]]
    first, second, _ = _timings()
    assert list(whiskers[0]) == pytest.approx([first.p10, first.p90]), "11 samples: p10-p90"
    assert list(whiskers[1]) == [50.0, 60.0], "3 samples: min-max, not percentiles of three"
    assert "min-max" in ax.get_xlabel() and "p10-p90" in ax.get_xlabel()
    assert (tmp_path / "figures" / "dots.png").exists()


def test_a_noisy_timing_is_drawn_hollow_and_labelled():
    fig = plots.dot_chart(_timings())
    ax = fig.axes[0]
    dots = ax.get_lines()[3::4]
    assert _timings()[2].noisy and not _timings()[0].noisy
    assert dots[2].get_markerfacecolor() == "white" and dots[0].get_markerfacecolor() != "white"
    assert any("noisy" in t.get_text() for t in ax.texts)
    assert not any("noisy" in t.get_text() for t in ax.texts[:2])


def test_time_ticks_read_in_units_on_a_narrow_log_axis():
    narrow = [Timing("a", (23e6, 24e6, 25e6)), Timing("b", (30e6, 36e6, 37e6))]
    fig = plots.dot_chart(narrow, annotate=False)
    texts = _tick_texts(fig)
    assert texts and all(t.endswith((" ns", " µs", " ms", " s")) for t in texts), texts
    assert not any("10^" in t or "times" in t or "$" in t for t in texts)


def test_time_ticks_on_a_distribution_and_a_linear_axis():
    fig = plots.distribution_chart({"no cache": [23e6, 25e6, 26e6, 37e6]})
    texts = _tick_texts(fig)
    assert texts and all("ms" in t for t in texts), texts
    fig = plots.dot_chart(_timings()[1:2], logx=False, annotate=False)
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[0].get_xlim()[0] == 0
    assert all(t == "0" or t.endswith("ns") for t in _tick_texts(fig))


def test_the_old_names_still_work_and_draw_dots():
    fig = plots.latency_chart(_timings())
    assert not fig.axes[0].patches and fig.axes[0].get_xscale() == "log"
    fig = plots.speedup_chart(_timings(), _timings()[0], colors={"lru_cache": "#000000"})
    ax = fig.axes[0]
    assert not ax.patches and len(ax.texts) == 3
    assert matplotlib.colors.to_hex(ax.get_lines()[3].get_color()) == "#000000"


def test_a_bar_chart_on_a_log_axis_draws_dots_instead_of_bars():
    fig = plots.bar_chart({"a": 10, "b": 1000}, ylabel="n", logy=True)
    assert not fig.axes[0].patches and fig.axes[0].get_yscale() == "log"
    fig = plots.bar_chart({"a": 10, "b": 1000}, ylabel="n")
    assert len(fig.axes[0].patches) == 2


def test_curves_that_coincide_stay_distinguishable():
    fig = plots.curve_chart([1, 2, 3], {"FIFO": [0.1, 0.2, 0.3], "RR": [0.1, 0.2, 0.3]}, xlabel="x", ylabel="y")
    fifo, rr = fig.axes[0].get_lines()
    assert (fifo.get_linestyle(), fifo.get_marker()) != (rr.get_linestyle(), rr.get_marker())
    fig = plots.curve_chart([1, 2], {"a": [1, 2]}, xlabel="x", ylabel="y", styles={"a": {"ls": ":"}})
    assert fig.axes[0].get_lines()[0].get_linestyle() == ":"


def test_the_hit_ratio_chart_draws_opt_and_a_labelled_ceiling():
    fig = plots.hit_ratio_chart([1, 10, 100], {"LRU": [0.1, 0.4, 0.7]}, ceiling=0.8, opt=[0.2, 0.5, 0.8])
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert plots.OPT_LABEL in labels and plots.CEILING_LABEL in labels
    assert "starts empty" in plots.CEILING_LABEL
    fig = plots.hit_ratio_chart([1, 10, 100], {"LRU": [0.1, 0.4, 0.7]}, logx=False)
    assert fig.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError):
        plots.hit_ratio_chart([1, 10], {"LRU": [0.1, 0.4]}, opt=[0.5])
    with pytest.raises(ValueError):
        plots.hit_ratio_chart([1, 10], {"LRU": [0.1, 0.4]}, opt=[0.5, 1.5])


def test_time_axis_refuses_an_unknown_axis():
    fig = plots.curve_chart([1, 2], {"a": [1e3, 1e6]}, xlabel="x", ylabel="y", logy=True, ns_axis=True)
    assert all(t.endswith(("ns", "µs", "ms")) for t in _tick_texts(fig, "y"))
    with pytest.raises(ValueError):
        plots.time_axis(fig.axes[0], "z")

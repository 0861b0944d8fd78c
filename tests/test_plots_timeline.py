"""The percentile timeline: panels that share their axes, a colour per series, p50 solid and p99 dashed."""

import math

import pytest

from cachelab import plots


def test_each_series_keeps_its_colour_and_the_events_are_marked(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    steps = {"start": [0.0, 0.1, 0.2], "p50": [1e5, math.nan, 3e5], "p99": [2e5, 4e8, 5e5]}
    panels = {"kill": {"victim": steps, "other": steps}, "hang": {"other": steps}}
    fig = plots.percentile_timeline(panels, xlabel="s after the fault", events={"kill": {"kill": 0.0, "promoted": 0.2}},
                                    save_as="timeline")
    top, bottom = fig.axes[:2]
    assert [line.get_linestyle() for line in top.get_lines()[:2]] == ["-", "--"]
    other_top = [line for line in top.get_lines() if line.get_label().startswith("other")]
    other_bottom = [line for line in bottom.get_lines() if line.get_label().startswith("other")]
    assert other_top[0].get_color() == other_bottom[0].get_color() != top.get_lines()[0].get_color()
    assert len(top.lines) == 4 + 2 and len(bottom.lines) == 2, "two series, two percentiles, two events"
    assert top.get_yscale() == "log" and top.get_shared_y_axes().joined(top, bottom)
    assert (tmp_path / "timeline.png").exists()


def test_mismatched_or_empty_panels_are_refused():
    with pytest.raises(ValueError):
        plots.percentile_timeline({}, xlabel="s")
    with pytest.raises(ValueError, match="p99"):
        plots.percentile_timeline({"a": {"s": {"start": [0, 1], "p50": [1, 2], "p99": [1]}}}, xlabel="s")

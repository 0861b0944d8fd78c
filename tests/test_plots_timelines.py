"""The timeline and request charts of 06: what they draw, and the mistakes they refuse."""

from __future__ import annotations

import pytest

from cachelab import plots


def test_timeline_chart_draws_a_step_per_series_marks_and_a_span(tmp_path):
    fig = plots.timeline_chart({"reader": ([0, 1, 2], [1, None, 2]), "other": ([0, 2], [1, 2])},
                               xlabel="s", ylabel="version", marks=[0.5, 1.5], span=(1, 1.4, "paused"),
                               save_as="timeline")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["reader", "other"]
    assert sum(line.get_linestyle() == ":" for line in ax.get_lines()) == 2
    assert (tmp_path / "figures" / "timeline.png").exists()
    with pytest.raises(ValueError, match="3 times for 2 values"):
        plots.timeline_chart({"bad": ([0, 1, 2], [1, 2])}, xlabel="s", ylabel="v")


def test_requests_chart_draws_a_panel_per_run_coloured_by_outcome(tmp_path):
    panel = {"starts": [0.1, 0.2, 0.3], "latencies_ns": [1e5, 3e7, 2e5], "outcomes": ["hit", "computed", "stale"],
             "shaded": [(0.2, 0.23)]}
    fig = plots.requests_chart({"a": panel, "b": panel}, xlabel="s", ylabel="latency", save_as="requests")
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert (tmp_path / "figures" / "requests.png").exists()
    with pytest.raises(ValueError, match="unknown outcomes"):
        plots.requests_chart({"a": {**panel, "outcomes": ["hit", "slow", "stale"]}}, xlabel="s", ylabel="l")

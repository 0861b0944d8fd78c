"""cachelab.plots.hit_ratio_panels and share_chart: the policy figures of 03 and the hit profile of 04."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from cachelab import plots  # noqa: E402


def test_panels_draw_policies_bounds_and_leave_undefined_points_out(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    sizes = [16, 100, 1000]
    fig = plots.hit_ratio_panels(
        sizes, {"Zipf": {"LRU": [0.1, 0.3, 0.8], "W-TinyLFU": [math.nan, 0.35, 0.8]}, "scan": {"LRU": [0.1, 0.2, 0.7]}},
        bounds={"Zipf": {"OPT": [0.3, 0.5, 0.9], "A0": [0.2, 0.4, 0.85]}}, ceiling=0.9, save_as="panels")
    assert len(fig.axes) == 2 and (tmp_path / "panels.png").exists()
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert {"LRU", "W-TinyLFU", "OPT", "A0"} <= set(labels)
    with pytest.raises(ValueError, match="between 0 and 1"):
        plots.hit_ratio_panels(sizes, {"x": {"LRU": [0.1, 2, 0.3]}})
    with pytest.raises(ValueError, match="panels that do not exist"):
        plots.hit_ratio_panels(sizes, {"x": {"LRU": [0.1, 0.2, 0.3]}}, bounds={"y": {"OPT": [0.1, 0.2, 0.3]}})


def test_share_chart_draws_one_bar_per_step_and_series(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path))
    fig = plots.share_chart({"small": {"hash": 0.3, "load": 0.2}, "large": {"hash": 0.9, "load": 0.05}},
                            title="Where a hit goes", save_as="shares")
    assert len(fig.axes[0].patches) == 4 and (tmp_path / "shares.png").exists()
    with pytest.raises(ValueError, match="same steps"):
        plots.share_chart({"small": {"hash": 0.3}, "large": {"load": 0.2}})

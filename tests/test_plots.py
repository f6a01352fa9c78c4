"""Figures: ticks at the measured n, colour bars on heat maps."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from toolkit.plots import heatmap, metric_figure, n_axis

NS = [316, 1000, 3162, 10000]  # conditional-diffusion's grid: no power of 2 or 10 but one


def curves() -> pd.DataFrame:
    rows = [
        {"study": "toy", "model": model, "n": n, "seed": seed, "metric": "err",
         "value": (1 + seed) * n**-0.5, "beta": beta}
        for model in ("a", "b") for n in NS for seed in (0, 1) for beta in (0.5, 1.5)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_error_figures_tick_the_measured_n():
    rates = pd.DataFrame(columns=["setting", "model", "metric", "theory", "n_min", "n_max"])
    fig = metric_figure(curves(), "err", rates, rate_groups=("beta",))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        assert list(ax.get_xticks()) == NS
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(n) for n in NS]
        assert ax.get_xscale() == "log"
    plt.close(fig)


def test_many_n_keep_every_tick_and_label_some():
    fig, ax = plt.subplots()
    ns = [2**k for k in range(4, 16)]
    n_axis(ax, ns)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert list(ax.get_xticks()) == ns
    assert 0 < sum(bool(t) for t in labels) <= 8 and labels[0] == "16"
    plt.close(fig)


def test_heat_maps_carry_a_colour_bar():
    fig, ax = plt.subplots()
    heatmap(ax, np.arange(16.0).reshape(4, 4), "attention", "weight")
    assert len(fig.axes) == 2  # the map and its colour bar
    bar = fig.axes[1]
    assert bar.get_ylabel() == "weight"
    assert np.isclose(ax.images[0].get_clim(), (0, 15)).all()
    plt.close(fig)

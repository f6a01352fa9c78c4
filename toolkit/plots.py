"""Figures of error against n: one PNG per (study, metric), one facet per setting; and
one PNG per study of the samples n_eps needed to reach error levels (plot_sample_complexity).

Each facet shows, per model (hue), the geometric mean over seeds at each n (the mean of
the logarithms, matching the log-log rate fit) with a band from the smallest to the
largest seed; a dashed line of the theory's slope through the centre of the fitted range
where the study declares one; and a dotted line for the metric's noise floor where the
study records one. Figures are drawn with the Agg backend (no display needed) and returned
as PNG bytes: the report writes every file at the end, after everything is computed.

One style for every figure, the studies' own included: apply_style (seaborn whitegrid,
colour-blind palette), n axes on a log scale with ticks at the measured n (n_axis),
heat maps with a colour bar (heatmap), PNG at DPI dots per inch (png_bytes).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator  # noqa: E402

from toolkit.rates import LEVEL, setting_labels  # noqa: E402

COLUMNS = 3  # facets per row
MAX_PANELS = 24  # facets per figure at most; a study with more settings lists the rest
MAX_SETTINGS = 60  # settings drawn in a sample-complexity figure at most
DPI = 110
MAX_N_LABELS = 8  # more measured n than this: every tick kept, every k-th labelled
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")


def apply_style() -> None:
    """The look shared by every figure of the report."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")


def n_axis(ax: plt.Axes, ns: Sequence[float], axis: str = "x") -> None:
    """A log axis of sample sizes with its ticks at the measured n (316, 1000, 3162, ...
    rather than powers of two or ten the data never visited)."""
    ns = sorted({float(n) for n in ns if n > 0})
    scale = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    step = -(-len(ns) // MAX_N_LABELS)  # ceil
    labels = [f"{n:.0f}" if i % step == 0 else "" for i, n in enumerate(ns)]
    scale.set_ticks(ns, labels)
    scale.set_minor_formatter(NullFormatter())
    scale.set_minor_locator(NullLocator())


def heatmap(ax: plt.Axes, matrix: np.ndarray, title: str, label: str = "") -> None:
    """A matrix as an image with its own colour bar (the scale differs between panels)."""
    image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, model, n): geometric mean, min and max of the positive values."""
    positive = frame[frame["value"] > 0].assign(log=lambda f: np.log(f["value"]))
    grouped = positive.groupby(["setting", "model", "n"], sort=True)
    summary = grouped.agg(log=("log", "mean"), low=("value", "min"), high=("value", "max"))
    return summary.assign(mean=np.exp(summary["log"])).drop(columns="log").reset_index()


def png_bytes(fig: plt.Figure) -> bytes:
    """The figure rendered to PNG in memory; closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def plot_metric(
    frame: pd.DataFrame,
    metric: str,
    rates: pd.DataFrame,
    rate_groups: Sequence[str] = (),
    floor_metric: str | None = None,
) -> bytes:
    """Error against n on log-log axes for one study and metric, as PNG bytes.

    frame: the study's tidy rows; rates: its rate table (for the theory slopes and the
    fitted n range); rate_groups: the study's rate_groups (one facet per setting).
    """
    return png_bytes(metric_figure(frame, metric, rates, rate_groups, floor_metric))


def metric_figure(
    frame: pd.DataFrame,
    metric: str,
    rates: pd.DataFrame,
    rate_groups: Sequence[str] = (),
    floor_metric: str | None = None,
) -> plt.Figure:
    """The figure of plot_metric, not yet rendered."""
    frame = frame[frame["metric"].isin([metric, floor_metric])]
    frame = frame.assign(setting=setting_labels(frame, rate_groups))
    # At most MAX_PANELS facets (the first settings in order); the rest are in rates.csv.
    every = sorted(frame.loc[frame["metric"] == metric, "setting"].unique())
    frame = frame[frame["setting"].isin(every[:MAX_PANELS])]
    # Facet titles name only what differs between the facets; the constant part of the
    # setting goes into the figure title.
    rows = frame[frame["metric"] == metric]
    varying = [c for c in rate_groups if rows[c].nunique(dropna=False) > 1]
    constant = [c for c in rate_groups if c not in varying]
    short = dict(zip(rows["setting"], setting_labels(rows, varying), strict=True))
    fixed = setting_labels(rows.head(1), constant).iloc[0] if constant else ""
    data = seed_summary(rows)
    floor = None
    if floor_metric is not None:
        floor = seed_summary(frame[frame["metric"] == floor_metric])
    study = str(frame["study"].iloc[0])
    models = sorted(data["model"].unique())
    palette = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
    settings = sorted(data["setting"].unique())

    apply_style()
    grid = sns.FacetGrid(
        data,
        col="setting",
        col_order=settings,
        col_wrap=min(COLUMNS, len(settings)),
        height=3.4,
        aspect=1.25,
        sharex=True,
        sharey=False,
    )
    theory_drawn = floor_drawn = False
    for setting, ax in grid.axes_dict.items():
        ax.set_yscale("log")
        for model in models:
            color = palette[model]
            curve = data[(data["setting"] == setting) & (data["model"] == model)]
            if curve.empty:
                continue
            ax.fill_between(curve["n"], curve["low"], curve["high"], color=color, alpha=0.2)
            ax.plot(curve["n"], curve["mean"], marker="o", ms=4, lw=1.8, color=color)
            if floor is not None:
                own = floor[(floor["setting"] == setting) & (floor["model"] == model)]
                if not own.empty:
                    ax.plot(own["n"], own["mean"], ls=":", lw=1.5, color=color)
                    floor_drawn = True
            theory_drawn |= _theory_line(ax, curve, rates, setting, model, metric, color)
        ax.set_title(short[setting], fontsize=11)
        _label_log_axes(ax)
        n_axis(ax, data["n"])
    grid.set_axis_labels("training samples n", metric)
    handles = [Line2D([], [], color=palette[m], marker="o", lw=1.8, label=m) for m in models]
    if theory_drawn:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.5, label="theory slope"))
    if floor_drawn:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.5, label="noise floor"))
    grid.figure.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, title="model"
    )
    grid.figure.suptitle(
        f"{study}: {metric} against n (line: geometric mean over seeds; band: seed min-max)"
        + (f"\n{fixed}" if fixed else "")
        + (
            f"\nthe first {MAX_PANELS} of {len(every)} settings (all in rates.csv)"
            if len(every) > MAX_PANELS
            else ""
        ),  # fmt: skip
        y=1.06 if fixed or len(every) > MAX_PANELS else 1.03,
        fontsize=12,
    )
    return grid.figure


def _label_log_axes(ax: plt.Axes) -> None:
    """Plain numbers (0.6, 1, 1e-05) rather than 6x10^-1; a facet spanning few decades
    gets some minor ticks labelled too, or it would show one number or none."""
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(PLAIN)
    low, high = ax.get_ylim()
    decades = np.log10(high / low)
    mantissas = (2, 3, 4, 5, 6, 7, 8, 9) if decades < 1 else (2, 5) if decades < 2.5 else ()

    def minor(value: float, _: int) -> str:
        mantissa = round(value / 10 ** np.floor(np.log10(value) + 1e-9))
        return f"{value:g}" if mantissa in mantissas else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    ax.tick_params(axis="y", which="minor", labelsize=9)


def _theory_line(
    ax: plt.Axes,
    curve: pd.DataFrame,
    rates: pd.DataFrame,
    setting: str,
    model: str,
    metric: str,
    color: tuple[float, float, float],
) -> bool:
    """Dashed reference of slope `theory` through the geometric centre of the fitted range."""
    row = rates[
        (rates["setting"] == setting) & (rates["model"] == model) & (rates["metric"] == metric)
    ]
    if row.empty or pd.isna(row["theory"].iloc[0]) or pd.isna(row["n_min"].iloc[0]):
        return False
    theory = float(row["theory"].iloc[0])
    n_min, n_max = float(row["n_min"].iloc[0]), float(row["n_max"].iloc[0])
    used = curve[(curve["n"] >= n_min) & (curve["n"] <= n_max)]
    if used.empty:
        return False
    n_centre = float(np.exp(np.log(used["n"]).mean()))
    y_centre = float(np.exp(np.log(used["mean"]).mean()))
    n = np.array([n_min, n_max])
    ax.plot(n, y_centre * (n / n_centre) ** theory, ls="--", lw=1.5, color=color, alpha=0.8)
    return True


# ---- Sample complexity: n_eps against the study's complexity axis ----------------------


def complexity_axis(table: pd.DataFrame, rate_groups: Sequence[str]) -> str | None:
    """The first rate-group column holding numbers with two or more values (beta, length,
    keys): the x axis of the sample-complexity figure. None when there is none."""
    for col in rate_groups:
        if col in table and pd.api.types.is_numeric_dtype(table[col]):
            if table[col].nunique() >= 2:
                return col
    return None


def plot_sample_complexity(table: pd.DataFrame, rate_groups: Sequence[str] = ()) -> bytes:
    """n_eps with its interval for one study (toolkit.rates.sample_complexity), as PNG.

    One panel per (metric, error level): with a complexity axis (complexity_axis), n_eps
    against it, one line per model (colour) and other varying setting (line style);
    without, a dot plot of n_eps per setting (rows) and model (colour). A hollow triangle
    marks a censored value: not reached by the largest n (at n_max, pointing outwards)
    or already reached at the smallest n (at n_min). Dotted lines: the n range measured.
    """
    study = str(table["study"].iloc[0])
    every = sorted(table["setting"].unique())
    table = table[table["setting"].isin(every[:MAX_SETTINGS])]  # the rest: in the CSV
    axis = complexity_axis(table, rate_groups)
    varying = [c for c in rate_groups if c in table and table[c].nunique(dropna=False) > 1]
    others = [c for c in varying if c != axis]
    table = table.assign(
        group=setting_labels(table, others) if others else "",
        short=setting_labels(table, varying) if varying else table["setting"],
    )
    models = sorted(table["model"].unique())
    palette = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
    styles = dict(zip(sorted(table["group"].unique()), ("-", "--", ":", "-.") * 8, strict=False))
    metrics = sorted(table["metric"].unique())
    levels = {m: sorted(table.loc[table["metric"] == m, "eps"].unique())[::-1] for m in metrics}
    cols = max(1, max(len(v) for v in levels.values()))
    n_low, n_high = float(table["n_min"].min()), float(table["n_max"].max())
    apply_style()
    height = 3.0 if axis else 0.8 + 0.3 * table["setting"].nunique() * max(1, len(models) / 2)
    fig, axes = plt.subplots(
        len(metrics),
        cols,
        figsize=(4.2 * cols, height * len(metrics)),
        squeeze=False,
        layout="constrained",
    )
    for i, metric in enumerate(metrics):
        for j in range(cols):
            ax = axes[i, j]
            if j >= len(levels[metric]):
                ax.set_visible(False)
                continue
            eps = levels[metric][j]
            rows = table[(table["metric"] == metric) & (table["eps"] == eps)]
            if axis:
                _n_eps_lines(ax, rows, axis, palette, styles, n_low, n_high)
            else:
                _n_eps_dots(ax, rows, models, palette, n_low, n_high)
            ax.set_title(f"{metric} <= {eps:g}", fontsize=10)
    handles = [Line2D([], [], color=palette[m], marker="o", lw=1.5, label=m) for m in models]
    if axis and len(styles) > 1:
        handles += [Line2D([], [], color="0.3", ls=s, label=g) for g, s in styles.items()]
    up, down = ("^", "v") if axis else (">", "<")
    handles += [
        Line2D([], [], color="0.3", marker=up, mfc="none", ls="", label="not reached by n_max"),
        Line2D([], [], color="0.3", marker=down, mfc="none", ls="", label="already at n_min"),
    ]
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    what = f"against {axis}" if axis else "per setting"
    fig.suptitle(
        f"{study}: samples n_eps to reach each error level, {what} "
        f"(bars: {LEVEL:.0%} seed bootstrap)"
        + (
            f"\nthe first {MAX_SETTINGS} of {len(every)} settings (all in sample_complexity.csv)"
            if len(every) > MAX_SETTINGS
            else ""
        ),  # fmt: skip
        fontsize=12,
    )
    return png_bytes(fig)


def _plotted(rows: pd.DataFrame, n_low: float, n_high: float) -> pd.DataFrame:
    """Where each n_eps is drawn: censored values at the n range's ends, interval ends
    beyond the range (inf) at the top of the axis."""
    top = n_high * 1.6
    y = rows["n_eps"].where(rows["status"] != "not reached", rows["n_max"].astype(float))
    low = rows["ci_low"].astype(float).clip(upper=top)
    high = rows["ci_high"].astype(float).clip(upper=top)
    return rows.assign(y=y.astype(float), low=low, high=high)


def _marker(status: str) -> tuple[str, str]:
    return {"not reached": ("^", "none"), "already reached": ("v", "none")}.get(status, ("o", ""))


def _n_eps_lines(ax, rows, axis, palette, styles, n_low, n_high) -> None:
    rows = _plotted(rows, n_low, n_high).sort_values(axis)
    for (model, group), line in rows.groupby(["model", "group"], sort=True):
        color = palette[model]
        x = line[axis].astype(float)
        ax.plot(x, line["y"], ls=styles[group], lw=1.4, color=color)
        for r in line.itertuples():
            marker, face = _marker(r.status)
            ax.plot(
                float(getattr(r, axis)), r.y, marker=marker, ms=6, color=color,
                mfc=face or color, ls="",
            )  # fmt: skip
        ok = line[line["low"].notna()]
        ax.vlines(ok[axis].astype(float), ok["low"], ok["high"], color=color, lw=1.0, alpha=0.7)
    for bound in (n_low, n_high):
        ax.axhline(bound, color="0.5", ls=":", lw=1.0)
    ax.set_yscale("log")
    ax.set_ylim(n_low / 1.6, n_high * 1.6)
    values = rows[axis].astype(float)
    if values.min() > 0 and values.max() / values.min() >= 8:
        ax.set_xscale("log", base=2)
    for scale in (ax.xaxis, ax.yaxis):
        scale.set_major_formatter(PLAIN)
        scale.set_minor_formatter(NullFormatter())
    ax.set_xlabel(axis)
    ax.set_ylabel("n_eps")


def _n_eps_dots(ax, rows, models, palette, n_low, n_high) -> None:
    rows = _plotted(rows, n_low, n_high)
    settings = sorted(rows["short"].unique())
    place = {s: k for k, s in enumerate(settings)}
    width = 0.6 / max(1, len(models))
    for m, model in enumerate(models):
        color = palette[model]
        for r in rows[rows["model"] == model].itertuples():
            y = place[r.short] + (m - (len(models) - 1) / 2) * width
            marker, face = _marker(r.status)
            marker = {"^": ">", "v": "<"}.get(marker, marker)
            ax.plot(r.y, y, marker=marker, ms=6, color=color, mfc=face or color, ls="")
            if pd.notna(r.low):
                ax.hlines(y, r.low, r.high, color=color, lw=1.2, alpha=0.8)
    for bound in (n_low, n_high):
        ax.axvline(bound, color="0.5", ls=":", lw=1.0)
    ax.set_xscale("log", base=2)
    ax.set_xlim(n_low / 1.6, n_high * 1.6)
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(range(len(settings)), settings, fontsize=9)
    ax.set_ylim(len(settings) - 0.5, -0.5)
    ax.set_xlabel("n_eps")

"""The report's figures (matplotlib, Agg backend): PNG files written into the experiment folder.

    best_so_far.png   the sweep's best validation metric against wall time, every trial's end marked
    curves.png        every trial's validation curve against epoch (stopped / failed ones drawn apart)
    params.png        parallel coordinates of the searched values, coloured by the metric
    slices.png        the metric against each searched value, one panel per parameter
    seeds.png         the winners' values per seed, mean +- std (when best/metrics.json has seed rows)
    importances.png   parameter importances (when given)

Everything here draws from a `SweepData`; kgsearch.sweep.report reads an experiment folder into one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kgsearch.sweep.figure_axes import clip_to, focus_range, range_axis, time_unit
from kgsearch.sweep.progress import improves

STOPPED, FAILED = "stopped_early", "failed"
STYLE = {"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 10,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.dpi": 100, "savefig.dpi": 110,
         "axes.grid": True, "grid.alpha": 0.3}
WARM, BEST, DONE, STOP, FAIL = "#2ca02c", "#d62728", "#1f77b4", "#7f7f7f", "#9467bd"


@dataclass
class TrialCurve:
    label: str
    status: str
    best: float
    params: dict
    epochs: list[float] = field(default_factory=list)  # epochs at which validation ran
    values: list[float] = field(default_factory=list)  # the metric there
    report_s: list[float] = field(default_factory=list)  # each report, seconds after the search began
    report_best: list[float] = field(default_factory=list)  # the trial's best so far at each report
    finished_s: float | None = None
    fidelity: dict = field(default_factory=dict)  # a GraSH trial's rung, graph share, epochs (trials.csv)


@dataclass
class SweepData:
    name: str
    metric: str
    mode: str
    space: dict  # searched parameter -> its spec ({type, low, high} / {type: choice, values})
    trials: list[TrialCurve]
    warm_start: str | None = None  # label of the warm-start trial (the shipped run file's values)
    start_from: str | None = None  # that run file
    reference: float | None = None  # the shipped run file's own validation value, where known
    winners: list[tuple[str, list[dict]]] = field(default_factory=list)  # (name, one flat dict per seed)
    importances: dict | None = None  # parameter -> importance

    def best_trial(self) -> TrialCurve | None:
        usable = [t for t in self.trials if math.isfinite(t.best)]
        if not usable:
            return None
        return (max if self.mode == "max" else min)(usable, key=lambda t: t.best)


def best_so_far(points, mode: str = "max") -> list[tuple[float, float]]:
    """(time, value) pairs -> the (time, new best) steps, in time order: a step only where it improved."""
    out, best = [], None
    for at, value in sorted(points, key=lambda p: p[0]):
        if improves(value, best, mode):
            best = value
            out.append((at, value))
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def metric_label(data: SweepData) -> str:
    """'val_mrr (validation, higher is better)'."""
    return f"{data.metric} (validation, {'higher' if data.mode == 'max' else 'lower'} is better)"


def _legend_outside(ax, **kw) -> None:
    if not ax.get_legend_handles_labels()[0]:  # nothing labelled (e.g. every trial failed): no empty legend
        return
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, framealpha=0.9, **kw)


def _note_hidden(ax, hidden: int, limits) -> None:
    if hidden:
        ax.text(0.01, 0.02, f"{hidden} trial(s) outside {limits[0]:.3g}-{limits[1]:.3g}: drawn hollow on the edge",
                transform=ax.transAxes, fontsize=9, color=STOP, va="bottom")


def plot_best_so_far(data: SweepData, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10.5, 5))
    seconds = [s for t in data.trials for s in t.report_s] + [t.finished_s for t in data.trials if t.finished_s]
    unit, unit_name = time_unit(max(seconds, default=0.0))
    # a GraSH sweep's subgraph trials (their values do not compare with the shipped run file's) are not in it
    whole = [t for t in data.trials if float(t.fidelity.get("graph_share", 1)) >= 1]
    points = [(s / unit, b) for t in whole for s, b in zip(t.report_s, t.report_best) if math.isfinite(b)]
    steps = best_so_far(points, data.mode)
    if steps:
        end = max([p[0] for p in points] + [(t.finished_s or 0) / unit for t in data.trials])
        xs, ys = [s[0] for s in steps] + [end], [s[1] for s in steps] + [steps[-1][1]]
        ax.step(xs, ys, where="post", color=BEST, lw=2.2, label="best so far", zorder=3)
    limits = focus_range([t.best for t in whole], data.mode)
    hidden = 0
    for status, colour, marker, name in ((None, DONE, "o", "trial finished"), (STOPPED, STOP, "v", "stopped early"),
                                         (FAILED, FAIL, "x", "failed")):
        group = [t for t in data.trials if (t.status == status if status else t.status not in (STOPPED, FAILED))
                 and t.finished_s is not None and math.isfinite(t.best)]
        if group:
            ys, out = clip_to([t.best for t in group], limits)
            ax.scatter([t.finished_s / unit for t in group], ys, marker=marker, s=36, label=name, zorder=4,
                       alpha=0.85, c=["none" if o else colour for o in out], edgecolors=colour)
            hidden += sum(out)
    warm = next((t for t in data.trials if t.label == data.warm_start and t.finished_s is not None), None)
    if warm is not None and math.isfinite(warm.best):
        ax.scatter([warm.finished_s / unit], [warm.best], marker="*", s=260, c=WARM, edgecolors="black",
                   label=f"warm start {warm.label}\n({_short(data.start_from) or 'run file'})", zorder=5)
    if data.reference is not None:
        ax.axhline(data.reference, color=WARM, ls="--", lw=1.5, label=f"shipped run file: {data.reference:.4f}")
    best = data.best_trial()
    title = f"{data.name}: best {data.metric} so far"
    ax.set_title(title + (f" (final {best.best:.4f}, {best.label})" if best else ""))
    ax.set_xlabel(f"wall time since the search began ({unit_name})")
    ax.set_ylabel(metric_label(data))
    ax.set_xlim(left=0)
    if limits:
        ax.set_ylim(*limits)
        _note_hidden(ax, hidden, limits)
    _legend_outside(ax)
    return _save(fig, path)


def plot_curves(data: SweepData, path: Path) -> Path:
    plt = _plt()
    from matplotlib.lines import Line2D

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(10.5, 5))
    best = data.best_trial()
    for t in sorted(data.trials, key=lambda t: t.status != STOPPED):  # finished ones drawn on top
        if not t.values:
            continue
        if t.status == FAILED:
            ax.plot(t.epochs, t.values, color=FAIL, ls=":", lw=1.2, alpha=0.8)
            ax.plot(t.epochs[-1:], t.values[-1:], "x", color=FAIL, ms=8)
        elif t.status == STOPPED:
            ax.plot(t.epochs, t.values, color=STOP, ls="--", lw=1.2, alpha=0.8, zorder=6)  # short: on top
            ax.plot(t.epochs[-1:], t.values[-1:], "v", color=STOP, ms=7, zorder=6)
        else:
            ax.plot(t.epochs, t.values, color=DONE, lw=1.3, alpha=0.7)
    handles = [Line2D([], [], color=DONE, lw=1.3, label="ran to the end"),
               Line2D([], [], color=STOP, ls="--", marker="v", label="stopped early (ASHA / patience)")]
    if any(t.status == FAILED and t.values for t in data.trials):
        handles.append(Line2D([], [], color=FAIL, ls=":", marker="x", label="failed"))
    for t, colour, name in ((next((t for t in data.trials if t.label == data.warm_start), None), WARM, "warm start"),
                            (best, BEST, "best")):
        if t is not None and t.values:
            ax.plot(t.epochs, t.values, color=colour, lw=2.6, zorder=5)
            handles.append(Line2D([], [], color=colour, lw=2.6, label=f"{name}: {t.label} ({t.best:.4f})"))
    limits = focus_range([t.best for t in data.trials], data.mode)
    if limits:  # the curves' early epochs and the collapsed trials run off the bottom edge
        ax.set_ylim(*limits)
    ax.set_title(f"{data.name}: validation curve of every trial ({len(data.trials)} trials)"
                 + (", the better half's range" if limits else ""))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric_label(data))
    _legend_outside(ax, handles=handles)
    return _save(fig, path)


def _position(spec: dict, value):
    """A searched value on [0, 1] of its range (log scale where the space is), or None when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.get("type") == "choice":
        values = [str(v) for v in spec.get("values", [])]
        return values.index(str(value)) / max(1, len(values) - 1) if str(value) in values else None
    low, high = float(spec["low"]), float(spec["high"])
    log = spec.get("type") == "loguniform" or spec.get("log")
    if log and low > 0 and float(value) > 0:
        low, high, value = math.log(low), math.log(high), math.log(float(value))
    return 0.5 if high == low else (float(value) - low) / (high - low)


def _ends(spec: dict) -> tuple[str, str]:
    if spec.get("type") == "choice":
        values = spec.get("values", [])
        return (str(values[0]), str(values[-1])) if values else ("", "")
    return f"{float(spec['low']):.3g}", f"{float(spec['high']):.3g}"


def _colour_scale(data: SweepData):
    import matplotlib as mpl

    values = [t.best for t in data.trials if math.isfinite(t.best)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    norm = mpl.colors.Normalize(low, high if high > low else low + 1e-9)
    cmap = mpl.colormaps["viridis" if data.mode == "max" else "viridis_r"]
    return norm, cmap


def plot_parallel(data: SweepData, path: Path) -> Path:
    plt = _plt()
    import matplotlib as mpl
    from matplotlib import patheffects

    names = list(data.space)
    fig, ax = plt.subplots(figsize=(max(9, 1.15 * (len(names) + 1) + 2), 5.5))
    norm, cmap = _colour_scale(data)
    usable = sorted((t for t in data.trials if math.isfinite(t.best)), key=lambda t: t.best,
                    reverse=data.mode == "min")  # the best drawn last, on top
    span = (norm.vmax - norm.vmin) or 1.0
    for t in usable:
        ys = [_position(data.space[n], t.params.get(n)) for n in names] + [(t.best - norm.vmin) / span]
        xs = [i for i, y in enumerate(ys) if y is not None]
        warm = t.label == data.warm_start
        outline = [patheffects.Stroke(linewidth=5.5, foreground="black"), patheffects.Normal()] if warm else None
        ax.plot(xs, [ys[i] for i in xs], color=cmap(norm(t.best)), lw=3 if warm else 1.6, path_effects=outline,
                ls="--" if t.status == STOPPED and not warm else "-", alpha=0.55 if t.status == STOPPED else 0.95,
                marker="o", ms=3, zorder=4 if warm else 2)
    for i, n in enumerate(names + [data.metric]):
        ax.axvline(i, color="black", lw=0.8)
        low, high = _ends(data.space[n]) if n in data.space else (f"{norm.vmin:.3g}", f"{norm.vmax:.3g}")
        box = {"facecolor": "white", "edgecolor": "none", "pad": 1.0}
        ax.text(i, -0.04, low, ha="center", va="top", fontsize=9, bbox=box)
        ax.text(i, 1.04, high, ha="center", va="bottom", fontsize=9, bbox=box)
    ax.set_xticks(range(len(names) + 1))
    labels = [n + (" (log)" if data.space[n].get("type") == "loguniform" else "") for n in names]
    ax.set_xticklabels(labels + [data.metric], rotation=30, ha="right")
    ax.tick_params(axis="x", pad=6)
    ax.set_yticks([])
    ax.set_ylim(-0.14, 1.14)
    ax.set_xlim(-0.4, len(names) + 0.4)
    ax.grid(False)
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    bar.set_label(f"best validation {data.metric}")
    extra = f"; outlined: warm start {data.warm_start}" if data.warm_start else ""
    ax.set_title(f"{data.name}: searched values (each axis from its low to high end; dashed: stopped early{extra})")
    return _save(fig, path)


def plot_slices(data: SweepData, path: Path) -> Path:
    plt = _plt()
    names = list(data.space)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.6), squeeze=False, sharey=True)
    order = {t.label: i for i, t in enumerate(data.trials)}
    cmap = plt.get_cmap("plasma")
    limits = focus_range([t.best for t in data.trials], data.mode, keep=0.75)
    for ax, name in zip(axes.flat, names):
        spec = data.space[name]
        group = [t for t in data.trials if math.isfinite(t.best) and t.params.get(name) is not None]
        xs = [t.params[name] if spec.get("type") != "choice" else str(t.params[name]) for t in group]
        ys, out = clip_to([t.best for t in group], limits)
        inside = [i for i, o in enumerate(out) if not o]
        ax.scatter([xs[i] for i in inside], [ys[i] for i in inside], c=[order[group[i].label] + 1 for i in inside],
                   cmap=cmap, vmin=1, vmax=max(2, len(data.trials)), s=28, edgecolors="black", linewidths=0.3)
        outside = [i for i, o in enumerate(out) if o]  # far worse (e.g. collapsed): hollow, on the edge
        if outside:
            ax.scatter([xs[i] for i in outside], [ys[i] for i in outside], marker="v", s=34, facecolors="none",
                       edgecolors="black", linewidths=0.8, clip_on=False, zorder=4)
        for t, x, y in zip(group, xs, ys):
            if t.label == data.warm_start:
                ax.scatter([x], [y], marker="*", s=200, c=WARM, edgecolors="black", zorder=5)
        if limits:
            ax.set_ylim(*limits)
        range_axis(ax, spec)
        ax.set_title(name, fontsize=11)
        ax.tick_params(labelsize=9)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(data.metric)
    note = f"; star: warm start {data.warm_start}" if data.warm_start else ""
    if limits:
        note += f"; hollow on the edge: outside {limits[0]:.3g}-{limits[1]:.3g}"
    fig.suptitle(f"{data.name}: best validation {data.metric} against each searched value "
                 f"(x: the searched range{note})", fontsize=13)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    import matplotlib as mpl

    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(1, max(2, len(data.trials))), cmap=cmap),
                       cax=fig.add_axes((0.945, 0.15, 0.012, 0.7)))
    bar.set_label("trial number (order of creation)")
    from matplotlib.ticker import MaxNLocator

    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return _save(fig, path)


def seed_values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def plot_seeds(data: SweepData, path: Path) -> Path | None:
    keys = [k for k in (f"val_{data.metric.removeprefix('val_')}", f"test_{data.metric.removeprefix('val_')}")
            if any(seed_values(rows, k) for _, rows in data.winners)]
    if not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys) + 1, 4.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (name, rows) in enumerate(data.winners):
            values = seed_values(rows, key)
            if not values:
                continue
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            ax.errorbar([i], [mean], yerr=[std], fmt="s", color=BEST if i == 0 else DONE, ms=9, capsize=8, lw=2)
            ax.scatter([i + 0.12] * len(values), values, color="black", s=22, zorder=4)
            ax.annotate(f"{mean:.4f}\n± {std:.4f}", (i, mean), xytext=(-16, 0), textcoords="offset points",
                        va="center", ha="right", fontsize=9)
        ax.set_xticks(range(len(data.winners)))
        ax.set_xticklabels([name + ("\n(chosen)" if i == 0 else "") for i, (name, _) in enumerate(data.winners)])
        ax.set_xlim(-0.75, len(data.winners) - 0.5)
        ax.set_title(key)
        ax.set_ylabel(key)
    n = max(len(rows) for _, rows in data.winners)
    fig.suptitle(f"{data.name}: winners re-trained with {n} seeds (square: mean ± std, dots: seeds; "
                 "red: chosen, best mean validation)", fontsize=13)
    fig.tight_layout()
    return _save(fig, path)


def plot_importances(data: SweepData, path: Path) -> Path | None:
    if not data.importances:
        return None
    plt = _plt()
    items = sorted(data.importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.5))
    ax.barh([k for k, _ in items], [v for _, v in items], color=DONE)
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=9)
    ax.set_xlabel(f"importance for validation {data.metric} (share, sums to 1)")
    ax.set_title(f"{data.name}: which searched parameters mattered")
    ax.grid(axis="y", visible=False)
    return _save(fig, path)


def write_figures(data: SweepData, folder: Path) -> list[Path]:
    """Every figure that `data` has material for, as PNG files in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = [plot_best_so_far(data, folder / "best_so_far.png"), plot_curves(data, folder / "curves.png")]
    if data.space and any(math.isfinite(t.best) for t in data.trials):
        made += [plot_parallel(data, folder / "params.png"), plot_slices(data, folder / "slices.png")]
    if data.winners:
        made.append(plot_seeds(data, folder / "seeds.png"))
    made.append(plot_importances(data, folder / "importances.png"))
    return [p for p in made if p is not None]


def _short(path: str | None) -> str:
    return Path(path).name if path else ""

"""The report's figures for one dataset: a τ×β heatmap of the final score, learning curves per configuration and the
IQM intervals of the configurations (the τ–β scatter of a search is in ``iql.report.search``).

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no display, no global state) by the
``*_figure`` helpers (which tests inspect) and returned as PNG bytes by the ``*_png`` functions.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from iql.report.table import ConfigResult, format_mean_std, mean_std

METRIC_LABELS = {"normalized_score": "normalized score", "return_mean": "return", "success_rate": "success rate (%)"}
MAX_INTERVALS = 15  # configurations drawn in the interval figure (the highest IQMs, plus baselines)


def png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def baseline_text(results: list[ConfigResult]) -> str:
    """``BC 5.0 ± 0.3 (n=2)`` for the non-IQL configurations, to quote beside the IQL grid."""
    parts = [
        f"{result.key.label.upper()} {format_mean_std(*result.final)} (n={len(result.seeds)})"
        for result in results
        if result.key.expectile is None and result.final_scores
    ]
    return "; ".join(parts)


def colour_range(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> tuple[float, float]:
    """(low, high) of a colour scale: the finite ``values``' range, either end fixed by ``vmin``/``vmax``; an end
    that is not fixed moves away where the range would be empty (one value, or a fixed end beyond the data)."""
    finite = values[np.isfinite(values)]
    low = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if low >= high:
        if vmin is None:
            low = high - 1.0
        if vmax is None:
            high = low + (2.0 if vmin is None else 1.0)
    return low, high


def heatmap_png(
    results: list[ConfigResult],
    winner: ConfigResult | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> bytes | None:
    """τ (rows) × β (columns) of one dataset's IQL runs, coloured by the mean final score over finished seeds and
    annotated with mean ± std and the seed count. Only a ``winner`` (a configuration whose interval separates it
    from the rest) is outlined. The colour range is the data's unless ``vmin``/``vmax`` fix it (so that a 3-point
    spread does not look like a landscape). None when there is no IQL run."""
    figure = heatmap_figure(results, winner, vmin, vmax)
    return None if figure is None else png(figure)


def heatmap_figure(
    results: list[ConfigResult],
    winner: ConfigResult | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure | None:
    """The figure of ``heatmap_png``: one axes whose image holds the τ × β means."""
    grid = {(r.key.expectile, r.key.beta): r for r in results if r.key.expectile is not None and r.key.beta is not None}
    if not grid:
        return None
    taus = sorted({tau for tau, _ in grid})
    betas = sorted({beta for _, beta in grid})
    means = np.full((len(taus), len(betas)), np.nan)
    for (tau, beta), result in grid.items():
        means[taus.index(tau), betas.index(beta)] = result.final[0]

    metric = METRIC_LABELS.get(next(iter(grid.values())).metric, "score")
    figure = Figure(figsize=(2.0 + 1.3 * len(betas), 1.6 + 0.9 * len(taus)), layout="constrained")
    axes = figure.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    low, high = colour_range(means, vmin, vmax)
    image = axes.imshow(np.ma.masked_invalid(means), cmap=cmap, vmin=low, vmax=high, origin="lower", aspect="auto")
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label(f"final {metric} (mean over seeds)")

    axes.set_xticks(range(len(betas)), [f"{beta:g}" for beta in betas])
    axes.set_yticks(range(len(taus)), [f"{tau:g}" for tau in taus])
    axes.set_xlabel("β (inverse temperature)")
    axes.set_ylabel("τ (expectile)")
    for row, tau in enumerate(taus):
        for col, beta in enumerate(betas):
            if (tau, beta) not in grid:
                axes.text(col, row, "no run", ha="center", va="center", color="0.25", fontsize=9)
    for (tau, beta), result in grid.items():
        row, col = taus.index(tau), betas.index(beta)
        mean, std = result.final
        if math.isnan(mean):
            text, colour = f"no finished run\n({len(result.incomplete)} incomplete)", "0.25"
        else:
            spread = "" if math.isnan(std) else f"\n± {std:.1f}"
            unfinished = f" (+{len(result.incomplete)} incomplete)" if result.incomplete else ""
            text = f"{mean:.1f}{spread}\nn={len(result.seeds)}{unfinished}"
            colour = "black" if (min(max(mean, low), high) - low) / (high - low) > 0.55 else "white"
        axes.text(col, row, text, ha="center", va="center", color=colour, fontsize=9)
        if result is winner:
            axes.add_patch(Rectangle((col - 0.48, row - 0.48), 0.96, 0.96, fill=False, edgecolor="red", linewidth=2.5))

    dataset = next(iter(grid.values())).key.dataset_name
    title = f"{dataset}: final {metric}, mean ± std over seeds"
    baseline = baseline_text(results)
    verdict = "winner outlined" if winner is not None and winner in grid.values() else "no winner: intervals overlap"
    axes.set_title(f"{title}\n{baseline}; {verdict}" if baseline else f"{title}\n{verdict}", fontsize=10)
    return figure


def mean_curve(result: ConfigResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) over the seeds evaluated at each step, finished or not; std is NaN where one seed is."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for run in result.runs:
        for step, score in zip(run.curve.steps, run.curve.scores, strict=True):
            by_step[step].append(score)
    steps = sorted(by_step)
    stats = [mean_std(tuple(by_step[step])) for step in steps]
    return np.array(steps), np.array([m for m, _ in stats]), np.array([s for _, s in stats])


def _baseline_band(axes: Axes, result: ConfigResult) -> None:
    """A non-IQL baseline (BC) across a panel: its mean final score as a dashed line, ± one std as a band."""
    mean, std = result.final
    if math.isnan(mean):
        return
    label = f"{result.key.label.upper()} final {format_mean_std(mean, std)} (n={len(result.seeds)})"
    axes.axhline(mean, color="0.2", linestyle="--", linewidth=1.2, label=label)
    if not math.isnan(std):
        axes.axhspan(mean - std, mean + std, color="0.2", alpha=0.1)


def curves_png(results: list[ConfigResult], only: list[ConfigResult] | None = None) -> bytes | None:
    """Evaluation score against gradient step for one dataset: a panel per τ with a line per β (mean over seeds,
    band ± one std), or one panel of the ``only`` configurations (a search's best trials); the non-IQL baselines
    (BC) as a horizontal line at their final score with a ± std band in every panel. None when no run has
    evaluated yet."""
    figure = curves_figure(results, only)
    return None if figure is None else png(figure)


def curves_figure(results: list[ConfigResult], only: list[ConfigResult] | None = None) -> Figure | None:
    """The figure of ``curves_png``: one axes per panel."""
    if not any(run.curve.steps for result in results for run in result.runs):
        return None
    baselines = [r for r in results if r.key.expectile is None]
    iql = [r for r in (only if only is not None else results) if r.key.expectile is not None]
    taus: list[float | None] = (
        [None]
        if only is not None
        else [*sorted({r.key.expectile for r in iql if r.key.expectile is not None})] or [None]
    )
    betas = sorted({r.key.beta for r in iql if r.key.beta is not None})
    colours = colormaps["plasma"](np.linspace(0.0, 0.85, max(len(iql) if only is not None else len(betas), 1)))
    metric = METRIC_LABELS.get(results[0].metric, "score")

    figure = Figure(figsize=(4.2 * len(taus) + 1.0, 3.6), layout="constrained")
    panels = figure.subplots(1, len(taus), sharey=True, squeeze=False)[0]
    for axes, tau in zip(panels, taus, strict=True):
        if only is not None:
            lines = [(r, colours[i], f"#{i + 1} τ={r.key.expectile:g} β={r.key.beta:.3g}") for i, r in enumerate(iql)]
        else:
            lines = [
                (r, colours[betas.index(r.key.beta or 0.0)], f"β={r.key.beta:g}") for r in iql if r.key.expectile == tau
            ]
        for result, colour, label in lines:
            steps, mean, std = mean_curve(result)
            if steps.size == 0:
                continue
            n = sum(1 for run in result.runs if run.curve.steps)
            axes.plot(steps, mean, "-", color=colour, marker="o", markersize=3, label=f"{label} (n={n})")
            band = np.isfinite(std)
            if band.any():
                axes.fill_between(steps[band], (mean - std)[band], (mean + std)[band], color=colour, alpha=0.2)
        for baseline in baselines:
            _baseline_band(axes, baseline)
        switches = sorted({run.switch_step for r, _, _ in lines for run in r.runs if run.switch_step is not None})
        for switch in switches:  # fine-tuning runs: where the offline phase ends and environment steps begin
            axes.axvline(switch, color="0.4", linestyle=":", linewidth=1.2, label=f"online from step {switch}")
        if only is not None:
            axes.set_title(f"{results[0].key.dataset_name}: best {len(iql)} trials")
        else:
            axes.set_title(f"τ={tau:g}" if tau is not None else results[0].key.dataset_name)
        axes.set_xlabel("step (offline updates, then environment steps)" if switches else "gradient step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    panels[0].set_ylabel(f"evaluation {metric}")
    figure.suptitle(f"{results[0].key.dataset_name}: learning curves, mean ± std over seeds")
    return figure


def intervals_png(results: list[ConfigResult]) -> bytes | None:
    """The IQM of the final score with its stratified-bootstrap 95% interval, one bar per configuration with two
    seeds or more (the highest ``MAX_INTERVALS`` IQMs and every baseline), best at the top. None when no
    configuration has an interval."""
    with_stats = [r for r in results if r.stats is not None]
    if not with_stats:
        return None
    iql = sorted((r for r in with_stats if r.key.expectile is not None), key=lambda r: r.score, reverse=True)
    shown = sorted(iql[:MAX_INTERVALS] + [r for r in with_stats if r.key.expectile is None], key=lambda r: r.score)
    metric = METRIC_LABELS.get(results[0].metric, "score")
    figure = Figure(figsize=(6.4, 1.2 + 0.32 * len(shown)), layout="constrained")
    axes = figure.add_subplot()
    for row, result in enumerate(shown):
        assert result.stats is not None
        iqm, mean = result.stats.iqm, result.stats.mean
        colour = "0.45" if result.key.expectile is None else "tab:blue"
        axes.barh(row, iqm.high - iqm.low, left=iqm.low, height=0.6, color=colour, alpha=0.6)
        axes.vlines(iqm.point, row - 0.3, row + 0.3, color="black")
        axes.plot([mean.point], [row], marker="d", color="tab:orange", markersize=4)
    axes.set_yticks(range(len(shown)), [f"{r.key.label} (n={len(r.seeds)})" for r in shown], fontsize=8)
    axes.set_xlabel(f"final {metric}")
    axes.grid(alpha=0.3, axis="x")
    hidden = len(iql) - min(len(iql), MAX_INTERVALS)
    more = f"; {hidden} lower configurations not drawn" if hidden else ""
    axes.set_title(
        f"{results[0].key.dataset_name}: IQM (black) with 95% stratified-bootstrap CI (bar), mean (◆){more}",
        fontsize=9,
    )
    return png(figure)

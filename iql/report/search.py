"""Searches that are not grids (an Optuna study, hand-picked pairs): tell them from grids, and draw a τ–β scatter.

A dataset's IQL runs form a grid when their (τ, β) pairs are the full Cartesian product of a few distinct τ and β
values; otherwise each (τ, β) is a trial, drawn as a point coloured by its score, β on a log axis.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from iql.report.figures import METRIC_LABELS, baseline_text, colour_range, png
from iql.report.runs import ConfigKey, RunRecord
from iql.report.table import ConfigResult

MAX_GRID_VALUES = 8  # more distinct τ (or β) values than this is a search, even when they form a full product
TOP_TRIALS = 3  # best trials ringed in the scatter


def _points(keys: list[ConfigKey]) -> tuple[np.ndarray, np.ndarray]:
    """(β, τ) arrays of IQL configuration keys, for a scatter."""
    return np.array([key.beta for key in keys], dtype=float), np.array([key.expectile for key in keys], dtype=float)


def is_grid(pairs: set[tuple[float, float]]) -> bool:
    """Whether the (τ, β) pairs of a dataset's IQL runs (failed ones included) are a full τ × β grid of a few values."""
    taus = {tau for tau, _ in pairs}
    betas = {beta for _, beta in pairs}
    return len(taus) <= MAX_GRID_VALUES and len(betas) <= MAX_GRID_VALUES and len(pairs) == len(taus) * len(betas)


def top_trials(results: list[ConfigResult], count: int = TOP_TRIALS) -> list[ConfigResult]:
    """The IQL configurations with the highest score (IQM, or the mean of one seed), best first."""
    scored = [r for r in results if r.key.expectile is not None and r.final_scores and math.isfinite(r.score)]
    return sorted(scored, key=lambda result: result.score, reverse=True)[:count]


def scatter_png(
    results: list[ConfigResult],
    failed: list[RunRecord],
    vmin: float | None = None,
    vmax: float | None = None,
) -> bytes | None:
    """τ (y) against β (x, log) of one dataset's IQL trials, coloured by the final score (IQM over seeds, or the one
    seed's score); the best trials ringed and numbered, failed trials as grey crosses. The colour range is the
    scores' unless ``vmin``/``vmax`` fix it. None without IQL runs."""
    figure = scatter_figure(results, failed, vmin, vmax)
    return None if figure is None else png(figure)


def scatter_figure(
    results: list[ConfigResult],
    failed: list[RunRecord],
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure | None:
    """The figure of ``scatter_png``: one axes whose first collection is the finished trials, coloured by score."""
    iql = [r for r in results if r.key.expectile is not None and r.key.beta is not None]
    failed_iql = [run for run in failed if run.key.expectile is not None and run.key.beta is not None]
    if not iql and not failed_iql:
        return None
    finished = [r for r in iql if r.final_scores]
    metric = METRIC_LABELS.get(results[0].metric if results else "", "score")
    figure = Figure(figsize=(6.4, 4.6), layout="constrained")
    axes = figure.add_subplot()
    axes.set_xscale("log")
    if finished:
        scores = np.array([r.score for r in finished])
        low, high = colour_range(scores, vmin, vmax)
        image = axes.scatter(
            *_points([r.key for r in finished]),
            c=scores,
            cmap=colormaps["viridis"],
            vmin=low,
            vmax=high,
            s=[40 + 20 * len(r.seeds) for r in finished],
            edgecolors="0.2",
            linewidths=0.5,
            zorder=3,
        )
        figure.colorbar(image, ax=axes).set_label(f"final {metric} (IQM over seeds; one seed: its score)")
    for rank, result in enumerate(top_trials(results), start=1):
        beta, tau = _points([result.key])
        axes.scatter(beta, tau, s=260, facecolors="none", edgecolors="red", linewidths=1.8, zorder=4)
        axes.annotate(
            f"#{rank} {result.score:.1f}", (beta[0], tau[0]), textcoords="offset points", xytext=(8, 6), fontsize=8
        )
    unfinished = [r for r in iql if not r.final_scores]
    if unfinished:
        betas, taus = _points([r.key for r in unfinished])
        axes.scatter(betas, taus, marker="o", s=40, facecolors="none", edgecolors="0.5", label="not finished")
    if failed_iql:
        betas, taus = _points([run.key for run in failed_iql])
        axes.scatter(betas, taus, marker="x", s=50, color="0.45", label="failed at start-up")
    if unfinished or failed_iql:
        axes.legend(fontsize=8, loc="best")
    axes.set_xlabel("β (inverse temperature, log scale)")
    axes.set_ylabel("τ (expectile)")
    axes.grid(alpha=0.3, which="both")
    name = (results[0].key if results else failed_iql[0].key).dataset_name
    title = f"{name}: {len(iql) + len({(r.key.expectile, r.key.beta) for r in failed_iql})} (τ, β) trials"
    baseline = baseline_text(results)
    ringed = f"best {TOP_TRIALS} ringed (ranked, not shown to differ)"
    axes.set_title(f"{title}; {ringed}" + (f"\n{baseline}" if baseline else ""), fontsize=9)
    return figure

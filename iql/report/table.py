"""Aggregate runs into one row per configuration: mean ± std of the final and best score over finished seeds."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from iql.report.runs import ConfigKey, RunRecord

CSV_COLUMNS = (
    "dataset_id",
    "algorithm",
    "expectile",
    "beta",
    "metric",
    "n_seeds",
    "seeds",
    "final_mean",
    "final_std",
    "best_mean",
    "best_std",
    "n_incomplete",
)


def mean_std(values: tuple[float, ...]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); NaN for what n cannot give (no values, or std of one)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class ConfigResult:
    """One configuration: its finished seeds' scores and the runs that have not finished."""

    key: ConfigKey
    metric: str  # normalized_score | return_mean
    seeds: tuple[int, ...]  # finished seeds, sorted
    final_scores: tuple[float, ...]  # final score per finished seed, in ``seeds`` order
    best_scores: tuple[float, ...]  # best score per finished seed
    runs: tuple[RunRecord, ...]  # every run of this configuration, finished or not

    @property
    def final(self) -> tuple[float, float]:
        """(mean, std) of the final score over finished seeds."""
        return mean_std(self.final_scores)

    @property
    def best(self) -> tuple[float, float]:
        return mean_std(self.best_scores)

    @property
    def incomplete(self) -> tuple[RunRecord, ...]:
        return tuple(run for run in self.runs if not run.finished)

    @property
    def pooled_differences(self) -> list[str]:
        """Config entries that differ between the pooled runs (besides the seed), e.g. ``network.layer_norm``."""
        configs = [run.learning_config for run in self.runs if run.learning_config]
        if len(configs) < 2:
            return []
        differing = frozenset.union(*configs) - frozenset.intersection(*configs)
        return sorted({entry.split("=", 1)[0] for entry in differing})


def aggregate(runs: list[RunRecord]) -> list[ConfigResult]:
    """One ``ConfigResult`` per (dataset, algorithm, τ, β), sorted by dataset, then BC before IQL, then τ and β."""
    by_key: dict[ConfigKey, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_key[run.key].append(run)
    results = []
    for key in sorted(by_key, key=lambda k: (k.dataset_id, k.algorithm, k.expectile or 0.0, k.beta or 0.0)):
        group = sorted(by_key[key], key=lambda run: (run.seed, str(run.run_dir)))
        seeds, final_scores, best_scores = [], [], []
        for run in group:
            if run.final_score is not None:
                seeds.append(run.seed)
                final_scores.append(run.final_score)
                best_scores.append(run.final_score if run.best_score is None else run.best_score)
        results.append(
            ConfigResult(key, group[0].metric, tuple(seeds), tuple(final_scores), tuple(best_scores), tuple(group))
        )
    return results


def best_result(results: list[ConfigResult]) -> ConfigResult | None:
    """The configuration with the highest mean final score among those with a finished seed."""
    scored = [result for result in results if result.final_scores]
    return max(scored, key=lambda result: result.final[0]) if scored else None


def _value(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def table_rows(results: list[ConfigResult]) -> list[list[str | int | float | None]]:
    """One row per configuration in ``CSV_COLUMNS`` order; None where a value does not exist (std of one seed)."""
    rows: list[list[str | int | float | None]] = []
    for result in results:
        (final_mean, final_std), (best_mean, best_std) = result.final, result.best
        rows.append(
            [
                result.key.dataset_id,
                result.key.algorithm,
                result.key.expectile,
                result.key.beta,
                result.metric,
                len(result.seeds),
                " ".join(str(seed) for seed in result.seeds),
                _value(final_mean),
                _value(final_std),
                _value(best_mean),
                _value(best_std),
                len(result.incomplete),
            ]
        )
    return rows


def to_csv(results: list[ConfigResult]) -> str:
    """``report.csv``: ``table_rows`` at full float precision, an empty cell for None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table_rows(results):
        writer.writerow(["" if cell is None else cell for cell in row])  # str(float) round-trips exactly
    return buffer.getvalue()


def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """``12.3 ± 1.0``; ``12.3`` with one seed; ``–`` with none."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(results: list[ConfigResult], winner: ConfigResult | None) -> str:
    """A Markdown table of one dataset's configurations, best mean final score in bold."""
    lines = [
        "| configuration | τ | β | final score | best score | seeds (finished) | incomplete |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for result in results:
        final = format_mean_std(*result.final)
        if result is winner:
            final = f"**{final}**"
        tau = "–" if result.key.expectile is None else f"{result.key.expectile:g}"
        beta = "–" if result.key.beta is None else f"{result.key.beta:g}"
        seeds = ", ".join(str(seed) for seed in result.seeds) or "none"
        lines.append(
            f"| {result.key.label} | {tau} | {beta} | {final} | {format_mean_std(*result.best)} | "
            f"{seeds} (n={len(result.seeds)}) | {len(result.incomplete)} |"
        )
    return "\n".join(lines) + "\n"

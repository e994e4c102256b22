"""Aggregate runs into one row per configuration: mean ± std of the final and best score over finished seeds, and
the mean and IQM with stratified-bootstrap 95% intervals (``iql.report.stats``)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from iql.report.runs import ConfigKey, RunRecord
from iql.report.stats import DEFAULT_REPS, DEFAULT_SEED, Interval, SeedStats, score_matrix, seed_stats

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
    "n_runs",
    "final_mean_ci_low",
    "final_mean_ci_high",
    "final_iqm",
    "final_iqm_ci_low",
    "final_iqm_ci_high",
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
    stats: SeedStats | None = None  # mean and IQM of the final score with 95% intervals; None below 2 seeds

    @property
    def final(self) -> tuple[float, float]:
        """(mean, std) of the final score over finished seeds."""
        return mean_std(self.final_scores)

    @property
    def best(self) -> tuple[float, float]:
        return mean_std(self.best_scores)

    @property
    def score(self) -> float:
        """What configurations are ranked by: the IQM of the final score, the mean with one seed, NaN with none."""
        return self.stats.iqm.point if self.stats is not None else self.final[0]

    @property
    def seeds_text(self) -> str:
        """``2 of 3 finished (seeds 0, 1)``."""
        finished = ", ".join(str(seed) for seed in self.seeds)
        return f"{len(self.seeds)} of {len(self.runs)} finished" + (f" (seeds {finished})" if finished else "")

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


def aggregate(runs: list[RunRecord], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> list[ConfigResult]:
    """One ``ConfigResult`` per (dataset, algorithm, τ, β), sorted by dataset, then BC before IQL, then τ and β;
    intervals from ``reps`` bootstrap resamples drawn with ``seed``."""
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
        stats = seed_stats(score_matrix(final_scores), reps, seed)
        results.append(
            ConfigResult(
                key, group[0].metric, tuple(seeds), tuple(final_scores), tuple(best_scores), tuple(group), stats
            )
        )
    return results


def best_result(results: list[ConfigResult]) -> ConfigResult | None:
    """The configuration ranked first (highest ``score``: IQM, or the mean with one seed) among those with a
    finished seed. Being ranked first is not being better: ``iql.report.verdict`` decides whether it wins."""
    scored = [result for result in results if result.final_scores]
    return max(scored, key=lambda result: result.score) if scored else None


def _value(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _interval_cells(interval: Interval | None) -> list[float | None]:
    return [None, None, None] if interval is None else [interval.point, interval.low, interval.high]


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
                len(result.runs),
                *_interval_cells(result.stats.mean if result.stats else None)[1:],
                *_interval_cells(result.stats.iqm if result.stats else None),
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
    """A Markdown table of one dataset's configurations; the winner (only when its interval separates it) in bold."""
    lines = [
        "| configuration | τ | β | final score, mean ± std | final IQM [95% CI] | mean [95% CI] | best score | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        final = format_mean_std(*result.final)
        iqm = result.stats.iqm.format() if result.stats else "– (n < 2)"
        mean = result.stats.mean.format() if result.stats else "–"
        if result is winner:
            final, iqm = f"**{final}**", f"**{iqm}**"
        tau = "–" if result.key.expectile is None else f"{result.key.expectile:g}"
        beta = "–" if result.key.beta is None else f"{result.key.beta:g}"
        lines.append(
            f"| {result.key.label} | {tau} | {beta} | {final} | {iqm} | {mean} | {format_mean_std(*result.best)} | "
            f"{result.seeds_text} |"
        )
    return "\n".join(lines) + "\n"

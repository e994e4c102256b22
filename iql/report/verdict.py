"""What a report may claim about one dataset, and across datasets: a winner only where the intervals separate it,
probabilities of improvement of the best (τ, β) over the algorithm's default and over BC, and the warnings that
qualify any comparison (one seed, runs of different lengths)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from iql.config import AlgorithmConfig
from iql.report.runs import RunRecord
from iql.report.search import is_grid
from iql.report.stats import Interval, SeedStats, probability_of_improvement, score_matrix, seed_stats, separated_best
from iql.report.table import ConfigResult, best_result

COMPARABLE_ACROSS_DATASETS = ("normalized_score", "success_rate")  # returns of different datasets do not pool


@dataclass(frozen=True)
class Improvement:
    """P(``better`` > ``other``) with its interval; None when either has fewer than two finished seeds."""

    better: str
    other: str
    probability: Interval | None

    @property
    def text(self) -> str:
        claim = f"P({self.better} > {self.other})"
        if self.probability is None:
            return f"{claim}: not estimated (each needs 2 finished seeds or more)"
        evidence = "evidence of improvement" if self.probability.low > 0.5 else "no evidence of improvement"
        return f"{claim} = {self.probability.format(2)}: {evidence} (the interval's lower end must exceed 0.5)"


@dataclass(frozen=True)
class Comparison:
    """One dataset's verdict: the winner (or None) and why, improvements, warnings, and whether it is a grid."""

    dataset_id: str
    results: list[ConfigResult]
    grid: bool
    winner: ConfigResult | None
    reason: str
    improvements: list[Improvement] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Aggregate:
    """A configuration's IQM over seeds × datasets (the seeds finished on every dataset)."""

    label: str
    seeds: tuple[int, ...]
    stats: SeedStats


def compare(dataset_id: str, results: list[ConfigResult], runs: list[RunRecord], reps: int, seed: int) -> Comparison:
    """The verdict on one dataset's ``results``; ``runs`` are all its runs, failed ones included (they tell whether
    the configurations were laid out as a grid)."""
    pairs = {(r.key.expectile, r.key.beta) for r in runs if r.key.expectile is not None and r.key.beta is not None}
    scored = [r for r in results if r.final_scores]
    winner_label, reason = separated_best({r.key.label: r.stats for r in scored})
    winner = next((r for r in scored if r.key.label == winner_label), None)
    return Comparison(
        dataset_id=dataset_id,
        results=results,
        grid=is_grid({(float(t), float(b)) for t, b in pairs if t is not None and b is not None}),
        winner=winner,
        reason=reason,
        improvements=_improvements(results, reps, seed),
        warnings=_warnings(results),
    )


def _improvements(results: list[ConfigResult], reps: int, seed: int) -> list[Improvement]:
    """The top-ranked IQL configuration over the algorithm's default (τ, β) and over each baseline (BC)."""
    iql = [r for r in results if r.key.expectile is not None]
    top = best_result(iql)
    if top is None:
        return []
    default = AlgorithmConfig()
    others = [r for r in iql if (r.key.expectile, r.key.beta) == (default.expectile, default.beta) and r is not top] + [
        r for r in results if r.key.expectile is None and r.final_scores
    ]
    improvements = []
    for other in others:
        probability = probability_of_improvement(
            score_matrix(top.final_scores), score_matrix(other.final_scores), reps, seed
        )
        suffix = " (the default)" if other.key.expectile is not None else ""
        improvements.append(Improvement(top.key.label, other.key.label + suffix, probability))
    return improvements


def _warnings(results: list[ConfigResult]) -> list[str]:
    warnings = []
    scored = [r for r in results if r.final_scores]
    single = [r for r in scored if len(r.seeds) < 2]
    if single:
        warnings.append(
            f"{len(single)} of {len(scored)} configurations have fewer than 2 finished seeds (n < 2): their numbers "
            "are single runs without intervals, and no winner can be named among them."
        )
    lengths = Counter(run.target_steps for r in results for run in r.runs if run.target_steps is not None)
    if len(lengths) > 1:
        shown = ", ".join(f"{steps} ({count} runs)" for steps, count in sorted(lengths.items()))
        warnings.append(
            f"Runs of different lengths are compared here: train.steps = {shown}. Final scores of shorter runs are "
            "not comparable with longer ones; report each length separately."
        )
    for result in results:
        if result.pooled_differences:
            warnings.append(
                f"The runs pooled as {result.key.label} differ in {', '.join(result.pooled_differences)}; "
                "their mean mixes those settings."
            )
    return warnings


def across_datasets(
    by_dataset: dict[str, list[ConfigResult]], reps: int, seed: int
) -> tuple[list[Aggregate], str | None]:
    """IQM over seeds × datasets of each configuration run on every dataset with at least 2 common finished seeds,
    and the verdict among them (None without several datasets of a score that pools)."""
    if len(by_dataset) < 2:
        return [], None
    metrics = {r.metric for results in by_dataset.values() for r in results if r.final_scores}
    if len(metrics) != 1 or not metrics <= set(COMPARABLE_ACROSS_DATASETS):
        return [], f"not aggregated across datasets: their scores ({', '.join(sorted(metrics))}) do not pool"
    tables = [{(r.key.algorithm, r.key.expectile, r.key.beta): r for r in results} for results in by_dataset.values()]
    aggregates = []
    for config in sorted(set.intersection(*(set(table) for table in tables)), key=str):
        per_dataset = [table[config] for table in tables]
        common = sorted(set.intersection(*(set(r.seeds) for r in per_dataset)))
        if len(common) < 2:
            continue
        matrix = np.array([[r.final_scores[r.seeds.index(s)] for r in per_dataset] for s in common], dtype=float)
        stats = seed_stats(matrix, reps, seed)
        if stats is not None:
            label = per_dataset[0].key.label
            aggregates.append(Aggregate(label, tuple(common), stats))
    if not aggregates:
        return [], "not aggregated across datasets: no configuration has 2 common finished seeds on every dataset"
    _, reason = separated_best({a.label: a.stats for a in aggregates})
    return sorted(aggregates, key=lambda a: a.stats.iqm.point, reverse=True), reason

"""What a report may claim about one dataset, and across datasets: a winner only where the intervals separate it,
probabilities of improvement of the best (τ, β) over the paper's default for the runs' domain (or one named with
``--default``) and over BC, and the warnings that qualify any comparison (one seed, runs of different lengths)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from iql.config import AlgorithmConfig
from iql.logging import format_value
from iql.report.runs import ConfigKey, RunRecord
from iql.report.search import is_grid
from iql.report.stats import Interval, SeedStats, probability_of_improvement, score_matrix, seed_stats, separated_best
from iql.report.table import ConfigResult, best_result

COMPARABLE_ACROSS_DATASETS = ("normalized_score", "success_rate")  # returns of different datasets do not pool
# The paper's (τ, β) per domain (IQL Table 5), as conf/algorithm/iql_antmaze.yaml and iql_kitchen.yaml set them;
# locomotion's are AlgorithmConfig's (conf/algorithm/iql.yaml).
ANTMAZE_DEFAULT = (0.9, 10.0)
KITCHEN_DEFAULT = (0.7, 0.5)


@dataclass(frozen=True)
class Default:
    """The (τ, β) the best configuration is compared with, and why it is the default."""

    expectile: float
    beta: float
    why: str

    @property
    def label(self) -> str:
        """``τ=0.9 β=10``."""
        return f"τ={format_value(self.expectile)} β={format_value(self.beta)}"

    def matches(self, key: ConfigKey) -> bool:
        return (
            key.expectile is not None
            and key.beta is not None
            and math.isclose(key.expectile, self.expectile)
            and math.isclose(key.beta, self.beta)
        )


def paper_default(run: RunRecord) -> Default:
    """The paper's default (τ, β) for the domain a run's saved config describes: AntMaze's τ 0.9, β 10 for the
    goal-reaching reward r − 1 (``dataset.reward_transform=antmaze``), Kitchen/Adroit's τ 0.7, β 0.5 for actor
    dropout, else locomotion's τ 0.7, β 3."""
    if run.reward_transform == "antmaze":
        return Default(
            *ANTMAZE_DEFAULT,
            "the paper's AntMaze (goal-reaching) default, as the runs' config has dataset.reward_transform=antmaze "
            "(r − 1, as the AntMaze and PointMaze presets set it)",
        )
    if run.actor_dropout:
        return Default(
            *KITCHEN_DEFAULT,
            f"the paper's Kitchen/Adroit default, as the runs' config has network.actor_dropout="
            f"{format_value(run.actor_dropout)} (as the Kitchen and Adroit presets set it)",
        )
    locomotion = AlgorithmConfig()
    return Default(
        locomotion.expectile,
        locomotion.beta,
        "the paper's locomotion default, as the runs' config has neither the AntMaze reward "
        "(dataset.reward_transform=antmaze) nor the Kitchen/Adroit actor dropout (network.actor_dropout)",
    )


def choose_default(runs: list[RunRecord], named: tuple[float, float] | None = None) -> Default | str:
    """The default of one dataset's ``runs``: ``named`` (``--default τ,β``) when given, else the paper's default for
    the domain their configs describe; when they describe several, why none is chosen."""
    if named is not None:
        return Default(*named, "named with --default")
    defaults = {(d.expectile, d.beta): d for d in map(paper_default, runs)}
    if len(defaults) == 1:
        return next(iter(defaults.values()))
    shown = ", ".join(sorted(d.label for d in defaults.values()))
    return f"the runs' configs point to different paper defaults ({shown}); name the one to compare with: --default τ,β"


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
    default: Default | None = None  # the (τ, β) the best is compared with; None when the runs disagree on it
    default_note: str = ""  # which default, why, and whether it could be compared


@dataclass(frozen=True)
class Aggregate:
    """A configuration's IQM over seeds × datasets (the seeds finished on every dataset)."""

    label: str
    seeds: tuple[int, ...]
    stats: SeedStats


def compare(
    dataset_id: str,
    results: list[ConfigResult],
    runs: list[RunRecord],
    reps: int,
    seed: int,
    default: tuple[float, float] | None = None,
) -> Comparison:
    """The verdict on one dataset's ``results``; ``runs`` are all its runs, failed ones included (they tell whether
    the configurations were laid out as a grid, and their configs which paper default applies); ``default`` is the
    (τ, β) named with ``--default``."""
    pairs = {(r.key.expectile, r.key.beta) for r in runs if r.key.expectile is not None and r.key.beta is not None}
    scored = [r for r in results if r.final_scores]
    winner_label, reason = separated_best({r.key.label: r.stats for r in scored})
    winner = next((r for r in scored if r.key.label == winner_label), None)
    chosen = choose_default(runs, default)
    chosen_default = chosen if isinstance(chosen, Default) else None
    return Comparison(
        dataset_id=dataset_id,
        results=results,
        grid=is_grid({(float(t), float(b)) for t, b in pairs if t is not None and b is not None}),
        winner=winner,
        reason=reason,
        improvements=_improvements(results, chosen_default, reps, seed),
        warnings=_warnings(results),
        default=chosen_default,
        default_note=_default_note(results, chosen),
    )


def _default_note(results: list[ConfigResult], chosen: Default | str) -> str:
    """``Default: τ=0.9 β=10, the paper's AntMaze default, as …`` and whether the best could be compared with it."""
    iql = [r for r in results if r.key.expectile is not None]
    if not iql:
        return ""
    if not isinstance(chosen, Default):
        return f"No default compared with: {chosen}."
    note = f"Default: {chosen.label}, {chosen.why}"
    top = best_result(iql)
    at_default = [r for r in iql if chosen.matches(r.key) and r.final_scores]
    if top is not None and chosen.matches(top.key):
        return f"{note}; the top-ranked configuration is the default itself."
    if not at_default:
        return (
            f"{note}; no finished run at it, so P(best > default) is not estimated (run it, or name another "
            "default with --default τ,β)."
        )
    return f"{note}."


def _improvements(results: list[ConfigResult], default: Default | None, reps: int, seed: int) -> list[Improvement]:
    """The top-ranked IQL configuration over the ``default`` (τ, β) and over each baseline (BC)."""
    iql = [r for r in results if r.key.expectile is not None]
    top = best_result(iql)
    if top is None:
        return []
    at_default = [r for r in iql if default is not None and default.matches(r.key) and r is not top]
    others = at_default + [r for r in results if r.key.expectile is None and r.final_scores]
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

"""The score of record: which evaluation metric a run is ranked by (summary.json, W&B summary, progress bar,
``best_*``, ``iql.report``), from ``eval.score`` and what the evaluation environment reports.

- ``success_rate`` (0–100): the percentage of evaluation episodes that reached the goal; for environments that
  report ``info["success"]`` (Gymnasium-Robotics mazes). D4RL's AntMaze score is this number: its evaluation
  episodes end at the goal with reward 1, and its reference scores are 0 and 1.
- ``normalized_score``: Minari-normalised return, 100 · (R − ref_min) / (ref_max − ref_min).
- ``return_mean``: the raw return, for datasets without reference scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iql.errors import ConfigError

if TYPE_CHECKING:
    from iql.evaluation import EvalResult

METRICS = ("success_rate", "normalized_score", "return_mean")
LABELS = {"success_rate": "success rate", "normalized_score": "normalized score", "return_mean": "return"}


def score_of_record(setting: str, result: EvalResult, dataset_id: str = "") -> str:
    """The metric a run is ranked by: ``eval.score`` (auto | normalized_return | success_rate) given one evaluation.

    auto: success rate where the environment reports success, else the normalised return, else the raw return.
    """
    if setting == "success_rate":
        if result.success_rate is None:
            raise ConfigError(
                f"eval.score=success_rate but the evaluation environment of {dataset_id or 'this dataset'} reports "
                "no info['success']. Use eval.score=auto (or normalized_return), or evaluate in a goal-reaching "
                "environment that reports success (dataset.eval_env=...)."
            )
        return "success_rate"
    if setting == "auto" and result.success_rate is not None:
        return "success_rate"
    return "normalized_score" if result.normalized_score is not None else "return_mean"


def recorded_metric(summary: dict[str, Any]) -> str:
    """The metric a ``summary.json`` ranks its run by: the ``score_of_record`` it names; for summaries written
    before that key existed, the first of ``METRICS`` it holds."""
    named = summary.get("score_of_record")
    if named in METRICS:
        return str(named)
    return next((name for name in METRICS if summary.get(name) is not None), "return_mean")


def metric_value(result: EvalResult, metric: str) -> float | None:
    return {
        "success_rate": result.success_rate,
        "normalized_score": result.normalized_score,
        "return_mean": result.return_mean,
    }[metric]


def describe(metric: str, value: float | None) -> str:
    """``success rate 80.0%``, ``normalized score 97.3``, ``return -150.2``."""
    if value is None:
        return f"{LABELS[metric]} n/a"
    return f"{LABELS[metric]} {value:.1f}{'%' if metric == 'success_rate' else ''}"

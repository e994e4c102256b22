"""Interval estimates over seeds through ``rliable`` (Agarwal et al., 2021): mean and interquartile mean (IQM) with
stratified-bootstrap 95% confidence intervals, and the probability of improvement between two configurations.

Every estimate is drawn afresh from ``seed``, so an interval depends only on its scores, ``reps`` and ``seed`` (not on
the order or number of configurations in the report), and equals what

    numpy.random.seed(seed)
    rliable.library.get_interval_estimates({name: scores}, func, reps=reps, random_state=RandomState(seed))

returns for the same score matrix, of shape ``(runs, datasets)``. Both seeds are needed: rliable 1.2's
``StratifiedBootstrap`` draws its resampling indices from NumPy's global generator and ignores ``random_state``
(only the independent two-sample bootstrap of the probability of improvement uses it). The global generator's state
is restored afterwards.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_REPS = 2000
DEFAULT_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float

    def format(self, digits: int = 1) -> str:
        """``52.1 [48.7, 56.4]``."""
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class SeedStats:
    """Mean and IQM over the seeds of one configuration (or over seeds × datasets), each with its interval."""

    n_runs: int
    mean: Interval
    iqm: Interval


def _mean_and_iqm(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_mean(scores), metrics.aggregate_iqm(scores)])


def _estimate(
    scores: np.ndarray | list[np.ndarray], func: Callable[..., np.ndarray], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimates and (2, k) interval array for one score matrix (or a pair of them)."""
    from rliable import library

    saved = np.random.get_state()
    np.random.seed(seed)  # StratifiedBootstrap.update_indices calls np.random.choice
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)  # arch, for rliable
            point, interval = library.get_interval_estimates(
                {"x": scores},
                func,
                reps=reps,
                confidence_interval_size=CONFIDENCE,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved)
    return np.asarray(point["x"], dtype=float), np.asarray(interval["x"], dtype=float)


def score_matrix(scores: list[float] | tuple[float, ...]) -> np.ndarray:
    """One configuration's final scores on one dataset as rliable's ``(runs, tasks)`` matrix: shape ``(n, 1)``."""
    return np.asarray(scores, dtype=float).reshape(-1, 1)


def seed_stats(matrix: np.ndarray, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> SeedStats | None:
    """Mean and IQM of a ``(runs, datasets)`` score matrix with stratified-bootstrap 95% intervals (runs resampled
    within each dataset). None with fewer than two runs: one seed has no interval."""
    if matrix.ndim != 2 or matrix.shape[0] < 2 or not np.isfinite(matrix).all():
        return None
    point, interval = _estimate(matrix, _mean_and_iqm, reps, seed)
    mean, iqm = (Interval(float(point[i]), float(interval[0, i]), float(interval[1, i])) for i in range(2))
    return SeedStats(int(matrix.shape[0]), mean, iqm)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.probability_of_improvement(x, y)])


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
) -> Interval | None:
    """P(X > Y): the chance that a run of X scores above a run of Y (Mann–Whitney U / (n_x · n_y), averaged over
    datasets), with a 95% interval from resampling the runs of X and Y independently within each dataset.
    None unless both have two runs or more."""
    if x.shape[0] < 2 or y.shape[0] < 2 or x.shape[1] != y.shape[1]:
        return None
    point, interval = _estimate([x, y], _improvement, reps, seed)
    return Interval(float(point[0]), float(interval[0, 0]), float(interval[1, 0]))


def separated_best(candidates: dict[str, SeedStats | None]) -> tuple[str | None, str]:
    """The rule for naming a winner: the configuration with the highest IQM wins only when the lower end of its
    interval lies above the upper end of every other configuration's interval. Returns (winner or None, why)."""
    if len(candidates) < 2:
        return None, "only one configuration: nothing to compare"
    missing = sorted(name for name, stats in candidates.items() if stats is None)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return None, (
            f"fewer than 2 finished seeds for {shown}: a configuration with one seed has no interval, so no "
            "winner is named (run more seeds: sweeps/seeds.yaml)"
        )
    ranked = sorted(candidates.items(), key=lambda item: item[1].iqm.point if item[1] else -math.inf, reverse=True)
    (best, top), others = ranked[0], ranked[1:]
    assert top is not None
    overlapping = [name for name, stats in others if stats is not None and stats.iqm.high >= top.iqm.low]
    if overlapping:
        return None, (
            f"no evidence of a difference: the highest IQM, {best} {top.iqm.format()}, overlaps the interval of "
            f"{len(overlapping)} other configuration(s) ({', '.join(overlapping[:3])}"
            + (", …" if len(overlapping) > 3 else "")
            + ")"
        )
    return best, f"{best}'s IQM interval {top.iqm.format()} lies above every other configuration's interval"

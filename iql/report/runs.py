"""Find the run dirs under the paths a user gives and read what each holds, finished or not.

A run dir is any folder with ``summary.json`` (written when the run finishes), ``metrics.jsonl`` (a row per log
step) or ``.hydra/config.yaml`` (written when the job starts). Its configuration comes from ``summary.json``, or
from ``.hydra/config.yaml`` while the run is unfinished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iql.errors import ERROR_FILE, ReportError
from iql.logging import (
    METRICS_FILE,
    SUMMARY_FILE,
    changes_learning,
    format_value,
    read_metrics,
    short_dataset,
)
from iql.scoring import METRICS, recorded_metric

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_RUNTIME = Path(".hydra") / "hydra.yaml"  # Hydra's own config of the job: hydra.job.num
JOB_NUM_SEED = "${hydra:job.num}"  # a seed that is the job's number in its sweep
_MARKERS = (SUMMARY_FILE, METRICS_FILE, str(HYDRA_CONFIG))
_NOT_RUNS = {"wandb", ".submitit", ".hydra"}  # folders that never hold run dirs of their own


@dataclass(frozen=True, order=True)
class ConfigKey:
    """One configuration of a sweep; its seeds are aggregated. BC has no τ or β: both are None."""

    dataset_id: str
    algorithm: str
    expectile: float | None
    beta: float | None

    @property
    def label(self) -> str:
        """``iql τ=0.7 β=3`` or ``bc``."""
        if self.expectile is None or self.beta is None:
            return self.algorithm
        return f"{self.algorithm} τ={format_value(self.expectile)} β={format_value(self.beta)}"

    @property
    def dataset_name(self) -> str:
        return short_dataset(self.dataset_id)


@dataclass(frozen=True)
class Curve:
    """Evaluation scores of one run: ``steps`` (gradient steps, increasing) and ``scores`` of the same length."""

    steps: tuple[int, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class RunRecord:
    """What one run dir holds. ``final_score``/``best_score`` are None until ``summary.json`` exists."""

    run_dir: Path
    key: ConfigKey
    seed: int
    metric: str  # score of record: success_rate (%) | normalized_score (Minari-normalised, %) | return_mean
    final_score: float | None  # score of the last evaluation
    best_score: float | None  # best score over the run's evaluations
    curve: Curve
    last_step: int | None  # last step in metrics.jsonl
    target_steps: int | None  # train.steps
    sweep: str | None
    project: str | None  # logger.project
    learning_config: frozenset[str]  # ``key=value`` entries that change what is learned, seed excluded
    error: str | None = None  # the error the run failed with (error.txt), if launch.py recorded one
    switch_step: int | None = None  # fine-tuning runs: the last offline step (online steps follow it on the axis)
    # the saved config's domain signals (None when it does not say): which paper (τ, β) is the default to beat
    reward_transform: str | None = None  # dataset.reward_transform: none | locomotion | antmaze (goal reaching)
    actor_dropout: float | None = None  # network.actor_dropout: 0.1 in the Kitchen/Adroit presets

    @property
    def finished(self) -> bool:
        return self.final_score is not None

    @property
    def failed_at_start(self) -> bool:
        """Unfinished and no step logged: it failed before training (a bad config value, say) or never started."""
        return not self.finished and self.last_step is None

    @property
    def progress(self) -> str:
        """Why the run is incomplete, e.g. ``no summary.json; last logged step 100 of 300``."""
        if self.last_step is None:
            return "no summary.json and no metrics yet (not started, or killed before its first log step)"
        of = f" of {self.target_steps}" if self.target_steps else ""
        return f"no summary.json; last logged step {self.last_step}{of}"


@dataclass(frozen=True)
class UnreadableRun:
    """A run dir whose configuration cannot be told (no usable summary.json or .hydra/config.yaml)."""

    run_dir: Path
    reason: str


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run dirs given directly or found below ``paths`` (a sweep dir, or any folder of runs), sorted.

    Raises ``ReportError`` for a path that does not exist or holds no run.
    """
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise ReportError(
                f"{path} does not exist. Pass a sweep dir (multirun/<date>/<time>) or run dirs (outputs/<date>/<time>)."
            )
        below: set[Path] = set()
        for marker in _MARKERS:
            for hit in path.rglob(marker):  # ** matches no folder too: path itself may be a run dir
                run_dir = hit.parent.parent if marker == str(HYDRA_CONFIG) else hit.parent
                inside = run_dir.relative_to(path).parts if run_dir.is_relative_to(path) else ()
                if hit.is_file() and not _NOT_RUNS.intersection(inside):
                    below.add(run_dir)
        found |= below
        if not below:
            raise ReportError(
                f"No runs found in {path}: no folder below it holds {SUMMARY_FILE}, {METRICS_FILE} or "
                f"{HYDRA_CONFIG}. Pass the sweep dir Hydra printed (multirun/<date>/<time>, or your hydra.sweep.dir) "
                "or the run dirs themselves (outputs/<date>/<time>)."
            )
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort job dirs as numbers: ``sweep/2`` before ``sweep/10``."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


def _load_mapping(path: Path) -> dict[str, Any] | None:
    """A JSON or YAML file's top-level mapping; None when it is missing, unreadable or not a mapping."""
    try:
        text = path.read_text()
        payload = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):  # JSONDecodeError is a ValueError
        return None
    return payload if isinstance(payload, dict) else None


def _count(value: Any) -> int | None:
    """A step count from a saved config: None where it is missing or not a number (``.hydra/config.yaml`` keeps
    interpolations such as ``${oc.env:STEPS,200}`` unresolved)."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name)
    return section if isinstance(section, dict) else {}


def _flatten(values: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` → ``["a.b=1"]``."""
    entries: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            entries += _flatten(value, f"{prefix}{key}.")
        else:
            entries.append(f"{prefix}{key}={json.dumps(value)}")
    return entries


def _key(algorithm: str, dataset_id: str, expectile: Any, beta: Any) -> ConfigKey:
    if algorithm != "iql":
        return ConfigKey(dataset_id, algorithm, None, None)
    return ConfigKey(dataset_id, algorithm, float(expectile), float(beta))


def _seed(value: Any, run_dir: Path) -> int:
    """A seed from a saved config. ``${hydra:job.num}`` (sweeps/tau_beta_optuna.yaml: each trial's seed is its job
    number) stays unresolved in .hydra/config.yaml and is read from .hydra/hydra.yaml. Raises ValueError (or
    KeyError, TypeError) when neither tells."""
    if value == JOB_NUM_SEED:
        hydra = _section(_load_mapping(run_dir / HYDRA_RUNTIME) or {}, "hydra")
        value = _section(hydra, "job")["num"]
    return int(value)


def _identity(summary: dict[str, Any] | None, config: dict[str, Any], run_dir: Path) -> tuple[ConfigKey, int] | None:
    """(configuration, seed) from summary.json, else from .hydra/config.yaml; None when neither tells."""
    if summary is not None:
        try:
            key = _key(summary["algorithm"], summary["dataset_id"], summary["expectile"], summary["beta"])
            return key, int(summary["seed"])
        except (KeyError, TypeError, ValueError):
            pass
    try:
        algorithm, dataset = config["algorithm"], config["dataset"]
        key = _key(algorithm["name"], dataset["id"], algorithm["expectile"], algorithm["beta"])
        return key, _seed(config["seed"], run_dir)
    except (KeyError, TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def read_run(run_dir: Path) -> RunRecord | UnreadableRun:
    """Read one run dir: its configuration, final and best score (when finished) and its evaluation curve."""
    summary = _load_mapping(run_dir / SUMMARY_FILE)
    config = _load_mapping(run_dir / HYDRA_CONFIG) or {}
    identity = _identity(summary, config, run_dir)
    if identity is None:
        state = "an unreadable summary.json" if (run_dir / SUMMARY_FILE).exists() else "no summary.json"
        return UnreadableRun(run_dir, f"{state} and no readable {HYDRA_CONFIG}: its τ, β and seed are unknown")
    key, seed = identity
    rows = read_metrics(run_dir / METRICS_FILE)
    metric = score_of_record(summary, rows)
    evals = [(int(row["step"]), float(row[f"eval/{metric}"])) for row in rows if row.get(f"eval/{metric}") is not None]
    best_key = f"best_{metric}"
    logger, train, online = _section(config, "logger"), _section(config, "train"), _section(config, "online")
    online_steps = _count(online.get("steps")) or 0
    train_steps = _count(train.get("steps"))
    ignored = ("overrides=",) + (() if key.expectile is not None else ("algorithm.expectile=", "algorithm.beta="))
    learning = {entry for entry in _flatten(config) if changes_learning(entry) and not entry.startswith(ignored)}
    return RunRecord(
        run_dir=run_dir,
        key=key,
        seed=seed,
        metric=metric,
        final_score=summary.get(metric) if summary else None,
        best_score=summary.get(best_key) if summary else None,
        curve=Curve(tuple(step for step, _ in evals), tuple(score for _, score in evals)),
        last_step=int(rows[-1]["step"]) if rows and "step" in rows[-1] else None,
        target_steps=train_steps + online_steps if train_steps is not None else None,
        sweep=summary.get("sweep") if summary else None,
        project=logger.get("project"),
        learning_config=frozenset(learning),
        error=_read_error(run_dir) if summary is None else None,
        switch_step=train_steps if online_steps > 0 else None,
        reward_transform=_text(_section(config, "dataset").get("reward_transform")),
        actor_dropout=_number(_section(config, "network").get("actor_dropout")),
    )


def score_of_record(summary: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    """The metric a run is judged by: ``summary["score_of_record"]`` when the run names one, else the first of
    success rate, normalized score and return that it holds (in its summary, or in its eval rows while unfinished)."""
    if summary is not None:
        return recorded_metric(summary)
    logged = {key for row in rows for key, value in row.items() if value is not None}
    return next((name for name in METRICS if f"eval/{name}" in logged), "return_mean")


def _read_error(run_dir: Path) -> str | None:
    try:
        return (run_dir / ERROR_FILE).read_text().strip() or None
    except OSError:
        return None

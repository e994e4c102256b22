"""Entry point: compose a run with Hydra, then hand a typed ``RunConfig`` to ``iql.experiment.run``.

    python launch.py                                    # IQL on the local mixed-quality Pendulum dataset
    python launch.py algorithm=bc                       # the behaviour-cloning baseline on the same data
    python launch.py algorithm.expectile=0.9 algorithm.beta=10 seed=1
    python launch.py -m algorithm.expectile=0.5,0.7,0.9 hardware=local_parallel

This is the only module that sees Hydra or OmegaConf. Errors a user can fix are printed as one paragraph and
exit with code 2; ``HYDRA_FULL_ERROR=1`` shows the traceback.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from iql.config import RunConfig, unknown_keys
from iql.errors import ConfigError, IQLError, TrainingDivergedError

ConfigStore.instance().store(name="run_schema", node=RunConfig)
log = logging.getLogger("launch")


def to_run_config(cfg: DictConfig, overrides: list[str]) -> RunConfig:
    """Typed config from Hydra's; keys the schema does not know (``+algorithm.typo=1``) are an error."""
    values = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(values, dict)
    unknown = unknown_keys({str(k): v for k, v in values.items()})
    if unknown:
        raise ConfigError(
            f"Unknown config key(s): {', '.join(unknown)}. Check the spelling against `python launch.py --cfg job` "
            "(or the dataclasses in iql/config.py) and drop the '+' that force-added them."
        )
    try:
        run_config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"Invalid configuration: {error}") from error
    assert isinstance(run_config, RunConfig)
    run_config.overrides = list(overrides)
    return run_config


ERROR_FILE = "error.txt"  # why a run failed, for ``python -m iql.report``


def objective(summary: dict[str, Any]) -> float:
    """The value an Optuna study maximises: the run's score of record (``summary["score_of_record"]``, else the
    normalized score, else the return). Raises ``TrainingDivergedError`` when it is missing or not finite."""
    names = [summary.get("score_of_record", "normalized_score"), "normalized_score", "return_mean"]
    score = next((summary[name] for name in names if summary.get(name) is not None), None)
    if score is None or not math.isfinite(score):
        raise TrainingDivergedError(
            f"The run ended without a finite score of record ({score}); its trial is marked failed. "
            "Check its metrics.jsonl and launch.log."
        )
    return float(score)


def in_optuna_study(hydra_cfg: Any) -> bool:
    """Whether this job is a trial of hydra-optuna-sweeper (whose failures must not end the study)."""
    return hydra_cfg.mode == RunMode.MULTIRUN and "optuna" in str(hydra_cfg.sweeper.get("_target_", ""))


def record_error(run_dir: Path, error: Exception) -> None:
    """Write the error a run failed with next to its config, so the report can say why (best effort)."""
    from iql.checkpoint import atomic_write_bytes

    try:
        atomic_write_bytes(run_dir / ERROR_FILE, lambda handle: handle.write(f"{error}\n".encode()))
    except OSError:
        pass


class CreateSweepDir(Callback):
    """Creates the sweep dir when a multirun starts, before the sweeper opens anything in it (the Optuna study's
    ``sqlite:///<sweep dir>/optuna.db``); Hydra's launchers create it only when the first batch starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_config = to_run_config(cfg, list(hydra_cfg.overrides.task))
        from iql.experiment import run  # heavy imports (torch, gymnasium) after the config is known to be valid
        from iql.logging import sweep_name

        if run_config.logger.sweep is None and hydra_cfg.mode == RunMode.MULTIRUN:
            sweep = sweep_name(hydra_cfg.sweep.dir)  # a ready sweep (-cn tau_beta_grid) puts its name in front
            config_name = hydra_cfg.job.config_name
            run_config.logger.sweep = sweep if config_name in (None, "config") else f"{config_name}-{sweep}"

        summary = run(run_config, run_dir)
        score = objective(summary) if in_optuna_study(hydra_cfg) else None
    except IQLError as error:
        record_error(run_dir, error)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {error}", file=sys.stderr)
        if in_optuna_study(hydra_cfg):
            raise  # the sweeper marks the trial failed and goes on (max_failure_rate); sys.exit would end the study
        sys.exit(2)
    from iql.scoring import describe

    metric = summary["score_of_record"]
    best = summary.get(f"best_{metric}")
    unit = "%" if metric == "success_rate" else ""
    shown = describe(metric, summary[metric])
    if best is not None:
        shown += f" (max over evaluations {best:.1f}{unit})"
    log.info(
        "%s after %d steps (%s); outputs in %s",
        shown,
        summary["steps"],
        summary["algorithm"],
        hydra_cfg.runtime.output_dir,
    )
    return score if score is not None else float(summary[metric])


def unwritable_output_dir(argv: list[str]) -> str | None:
    """The output dir named on the command line (or the cwd, where Hydra's default dirs go) if it cannot be created.

    Hydra creates the run dir before any task code runs, so this is checked before handing over to Hydra.
    """
    named = [arg.split("=", 1)[1] for arg in argv if arg.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    for directory in named or [os.getcwd()]:
        existing = Path(directory).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return directory
    return None


if __name__ == "__main__":
    bad_dir = unwritable_output_dir(sys.argv[1:])
    if bad_dir is not None:
        print(
            f"Error: the output directory {bad_dir} cannot be created or written. Set hydra.run.dir (or "
            "hydra.sweep.dir for -m) to a folder you can write to, or start from a writable working directory.",
            file=sys.stderr,
        )
        sys.exit(2)
    main()

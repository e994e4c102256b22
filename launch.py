"""Entry point: compose a run with Hydra, then hand a typed ``RunConfig`` to ``iql.experiment.run``.

    python launch.py                                    # IQL on the local mixed-quality Pendulum dataset
    python launch.py algorithm=bc                       # the behaviour-cloning baseline on the same data
    python launch.py algorithm.expectile=0.9 algorithm.beta=10 seed=1
    python launch.py -m algorithm.expectile=0.5,0.7,0.9 hardware=local_parallel

This is the only module that sees Hydra or OmegaConf. Errors a user can fix, Hydra's own override and composition
errors included, are printed as one paragraph and exit with code 2; ``HYDRA_FULL_ERROR=1`` shows the traceback.
A multirun ends with a table of its jobs (``iql.sweep_table``) and the command that compares them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from iql.config import RunConfig, unknown_keys
from iql.errors import ERROR_FILE, ConfigError, Interrupted, IQLError, TrainingDivergedError
from iql.scoring import describe, recorded_metric
from iql.suggest import describe_key, suggest_keys, suggest_options
from iql.sweep_table import sweep_table

ConfigStore.instance().store(name="run_schema", node=RunConfig)
log = logging.getLogger("launch")
# Hydra prints its own errors and exits 1 unless HYDRA_FULL_ERROR=1, so __main__ sets that to receive them and
# keeps the user's own choice here (jobs started by a launcher inherit it).
SHOW_TRACEBACK = "IQL_SHOW_TRACEBACK"
STARTED_SWEEPS: list[Path] = []  # sweep dirs of the multiruns this process started (SweepStarted)


def show_traceback() -> bool:
    return os.environ.get(SHOW_TRACEBACK) == "1"


def to_run_config(cfg: DictConfig, overrides: list[str]) -> RunConfig:
    """Typed config from Hydra's; keys the schema does not know (``+algorithm.typo=1``) are an error."""
    try:
        values = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:  # e.g. ${hydra:job.num} (tau_beta_optuna's seed) outside a multirun
        key = getattr(error, "full_key", None) or "a value"
        raise ConfigError(
            f"Invalid configuration: {key} could not be resolved ({str(error).splitlines()[0]}). Set it on the "
            f"command line ({key}=<value>), or run the sweep it belongs to as a multirun."
        ) from error
    assert isinstance(values, dict)
    unknown = unknown_keys({str(k): v for k, v in values.items()})
    if unknown:
        raise ConfigError(
            f"Unknown config key(s): {', '.join(unknown)}.{did_you_mean(unknown[0])} Drop the '+' that force-added "
            "them; `python launch.py --cfg job` prints every key (documented in iql/config.py)."
        )
    try:
        run_config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"Invalid configuration: {error}") from error
    assert isinstance(run_config, RunConfig)
    run_config.overrides = list(overrides)
    return run_config


def config_source(hydra_cfg: Any) -> list[str]:
    """``-cd DIR -cn NAME hydra.mode=RUN``: what composes this job again, as one run, from its primary config when
    that is not ``conf/config.yaml`` (a ready sweep's, say; its ``hydra.mode: MULTIRUN`` would start a new sweep);
    [] for the default. The resume command a stopped run prints starts with them."""
    config_dir = next((s.path for s in hydra_cfg.runtime.config_sources if s.provider == "command-line"), None)  # -cd
    name = hydra_cfg.job.config_name or "config"
    if config_dir is None and name == "config":
        return []
    return [*(["-cd", str(Path(config_dir).resolve())] if config_dir else []), "-cn", name, "hydra.mode=RUN"]


def objective(summary: dict[str, Any]) -> float:
    """The value an Optuna study maximises: the run's score of record (``iql.scoring.recorded_metric``). Raises
    ``TrainingDivergedError`` when it is missing or not finite."""
    score = summary.get(recorded_metric(summary))
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


class SweepStarted(Callback):
    """Creates the sweep dir when a multirun starts, before the sweeper opens anything in it (the Optuna study's
    ``sqlite:///<sweep dir>/optuna.db``; Hydra's launchers create it only when the first batch starts), and notes
    it, so that the end of the multirun can print its jobs' table."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        STARTED_SWEEPS.append(sweep_dir)


def did_you_mean(key: str) -> str:
    """`` Did you mean algorithm.expectile (τ, the expectile)?`` for a mistyped key, or nothing."""
    keys = suggest_keys(key)
    return f" Did you mean {' or '.join(describe_key(k) for k in keys)}?" if keys else ""


def hydra_error_message(error: HydraException) -> str:
    """One paragraph for Hydra's own override and composition errors, with the closest valid keys or options."""
    text = str(error).strip()
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, option = error.missing_cfg_file.rpartition("/")
        close = suggest_options(option, list(error.options))
        hint = f" Did you mean {group}={' or '.join(close)}?" if close else ""
        return (
            f"{group}={option} is not an option of the config group '{group}'.{hint} Options: "
            f"{', '.join(sorted(error.options))}."
        )
    overridden = re.match(r"Could not (?:override|append to) '([^']+)'", text)
    if overridden:
        key = overridden.group(1)
        return (
            f"{key} is not a config key.{did_you_mean(key)} `python launch.py --cfg job` prints every key "
            "(documented in iql/config.py); a '+' prefix does not help, the schema rejects keys it does not know."
        )
    if isinstance(error, OverrideParseException):
        return f"Could not parse the command line: {text.splitlines()[0]}. Overrides are key=value, e.g. seed=1."
    cause = error.__cause__
    detail = f" ({str(cause).strip().splitlines()[0]})" if cause is not None and str(cause).strip() else ""
    if isinstance(error, ConfigCompositionException) and text.startswith("Error merging override"):
        return f"{text[len('Error merging ') :]} does not fit the schema{detail}. See iql/config.py for its type."
    return f"{text.splitlines()[0]}{detail}"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_config = to_run_config(cfg, list(hydra_cfg.overrides.task))
        run_config.config_source = config_source(hydra_cfg)
        from iql.experiment import run  # heavy imports (torch, gymnasium) after the config is known to be valid
        from iql.logging import sweep_name

        if run_config.logger.sweep is None and hydra_cfg.mode == RunMode.MULTIRUN:
            sweep = sweep_name(hydra_cfg.sweep.dir)  # a ready sweep (-cn tau_beta_grid) puts its name in front
            config_name = hydra_cfg.job.config_name
            run_config.logger.sweep = sweep if config_name in (None, "config") else f"{config_name}-{sweep}"

        summary = run(run_config, run_dir)
        score = objective(summary) if in_optuna_study(hydra_cfg) else None
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise KeyboardInterrupt from stop  # stop the whole sweep, not only this job
        sys.exit(stop.exit_code)
    except IQLError as error:
        record_error(run_dir, error)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # the launcher marks this job failed and runs the others (an Optuna study goes on too); the table at
            # the end names it, and its launch.log holds the message
            log.error("%s", error)
            raise
        if show_traceback():
            raise
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
    metric = recorded_metric(summary)  # a run dir finished by an older version may lack score_of_record
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


def print_sweep_tables() -> int:
    """Print the table of every multirun this process started; the number of its jobs that did not finish."""
    unfinished = 0
    for sweep_dir in STARTED_SWEEPS:
        table, failed = sweep_table(sweep_dir)
        print(table, file=sys.stderr)
        unfinished += failed
    return unfinished


def entry_point() -> int:
    """Run Hydra's ``main`` and turn what it raises into one paragraph and an exit code (0, or 2 for an error)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ[SHOW_TRACEBACK] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting 1
    bad_dir = unwritable_output_dir(sys.argv[1:])
    if bad_dir is not None:
        print(
            f"Error: the output directory {bad_dir} cannot be created or written. Set hydra.run.dir (or "
            "hydra.sweep.dir for -m) to a folder you can write to, or start from a writable working directory.",
            file=sys.stderr,
        )
        return 2
    try:
        main()
    except KeyboardInterrupt:
        print_sweep_tables()
        print("Interrupted.", file=sys.stderr)
        return 130
    except (HydraException, IQLError) as error:
        unfinished = print_sweep_tables()
        if show_traceback():
            raise
        message = hydra_error_message(error) if isinstance(error, HydraException) else str(error)
        if unfinished:
            message = (
                f"{unfinished} job(s) of the multirun did not finish (the table above names their logs): {message}"
            )
        print(f"Error: {message}", file=sys.stderr)
        return 2
    except Exception:
        if not STARTED_SWEEPS or print_sweep_tables() == 0 or show_traceback():
            raise  # not a failed job: a bug, shown in full
        print("Error: job(s) of the multirun failed; the table above names their logs.", file=sys.stderr)
        return 2
    print_sweep_tables()
    return 0


if __name__ == "__main__":
    sys.exit(entry_point())

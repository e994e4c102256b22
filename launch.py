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
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from iql.config import RunConfig, unknown_keys
from iql.errors import ConfigError, IQLError

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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        run_config = to_run_config(cfg, list(hydra_cfg.overrides.task))
        from iql.experiment import run  # heavy imports (torch, gymnasium) after the config is known to be valid
        from iql.logging import sweep_name

        if run_config.logger.sweep is None and hydra_cfg.mode == RunMode.MULTIRUN:
            sweep = sweep_name(hydra_cfg.sweep.dir)  # a ready sweep (-cn tau_beta_grid) puts its name in front
            config_name = hydra_cfg.job.config_name
            run_config.logger.sweep = sweep if config_name in (None, "config") else f"{config_name}-{sweep}"

        summary = run(run_config, Path(hydra_cfg.runtime.output_dir))
    except IQLError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
    from iql.scoring import describe

    metric = summary["score_of_record"]
    score = summary[metric]
    best = summary.get(f"best_{metric}")
    unit = "%" if metric == "success_rate" else ""
    shown = describe(metric, score) + (f" (max over evaluations {best:.1f}{unit})" if best is not None else "")
    log.info(
        "%s after %d steps (%s); outputs in %s",
        shown,
        summary["steps"],
        summary["algorithm"],
        hydra_cfg.runtime.output_dir,
    )
    return score


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

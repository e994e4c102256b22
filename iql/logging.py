"""Run outputs: always ``metrics.jsonl`` and ``summary.json`` in the run dir, plus a W&B run when enabled.

W&B is offline unless an API key (or ``WANDB_MODE``) says otherwise, and it can never kill a run: a failing
online start falls back to offline, a failing offline start or ``log`` call disables W&B, each with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
from dataclasses import asdict
from pathlib import Path
from typing import Any

from iql.checkpoint import atomic_write_bytes
from iql.config import LoggerConfig, RunConfig

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
# overrides that do not change what is learned, so they stay out of the W&B group and run name
_NON_CONFIG_PREFIXES = (
    "seed=",
    "hardware",
    "logger",
    "hydra",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_every",
    "eval.",
)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def _short_dataset(dataset_id: str) -> str:
    """``iql/pendulum/mixed-v0`` → ``pendulum-mixed-v0``: no ``/``, so it is safe in names and paths."""
    parts = dataset_id.split("/")
    return "-".join(parts[1:] if len(parts) > 1 else parts)


def _format_value(value: float) -> str:
    return f"{value:g}"


def config_overrides(cfg: RunConfig) -> list[str]:
    """Command-line overrides that change what is learned (not seed, hardware, logging cadence)."""
    return sorted(o.lstrip("+~") for o in cfg.overrides if not o.lstrip("+~").startswith(_NON_CONFIG_PREFIXES))


def run_group(cfg: RunConfig) -> str:
    """Seed-independent W&B group: dataset, algorithm, τ, β and any other learning-relevant override."""
    if cfg.logger.group:
        return cfg.logger.group
    a = cfg.algorithm
    group = f"{_short_dataset(cfg.dataset.id)}-{a.name}"
    if a.name == "iql":
        group += f"-t{_format_value(a.expectile)}-b{_format_value(a.beta)}"
    rest = [
        o for o in config_overrides(cfg) if not re.match(r"(algorithm\.(expectile|beta|name)|algorithm|dataset)=", o)
    ]
    if rest:
        group += "-" + ",".join(rest)
    return group.replace("/", "-")[:128]


def run_name(cfg: RunConfig) -> str:
    """Readable W&B run name, e.g. ``pendulum-mixed-v0 iql τ=0.9 β=10 s2``."""
    if cfg.logger.name:
        return cfg.logger.name
    a = cfg.algorithm
    name = f"{_short_dataset(cfg.dataset.id)} {a.name}"
    if a.name == "iql":
        name += f" τ={_format_value(a.expectile)} β={_format_value(a.beta)}"
    return f"{name} s{cfg.seed}"


def resolve_wandb_mode(cfg: LoggerConfig) -> str:
    """offline | online | disabled, from ``logger.backend``, ``logger.mode`` and the environment."""
    if cfg.backend == "none" or cfg.mode == "disabled":
        return "disabled"
    if cfg.mode != "auto":
        return cfg.mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in ("offline", "dryrun"):
        return "offline"
    if env_mode in ("online", "run", "disabled"):
        return {"run": "online"}.get(env_mode, env_mode)
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class RunLogger:
    """Writes metric rows and the summary to the run dir and, when enabled, to a W&B run (resumed by id)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, wandb_id: str | None = None, resume_step: int = 0) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS_FILE
        self._truncate_metrics_after(resume_step)
        self._wandb: Any = None
        self.wandb_id = wandb_id
        mode = resolve_wandb_mode(cfg.logger)
        if mode != "disabled":
            self._start_wandb(cfg, mode)

    def _truncate_metrics_after(self, step: int) -> None:
        """Drop rows written after the checkpoint we resume from, so ``step`` stays strictly increasing."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a row cut short by a kill
                continue
            if row.get("step", math.inf) <= step:
                kept.append(line + "\n")
        atomic_write_bytes(self.metrics_path, lambda handle: handle.write("".join(kept).encode()))

    def _start_wandb(self, cfg: RunConfig, mode: str) -> None:
        try:
            import wandb
        except ImportError:
            log.warning("wandb is not installed; logging to %s only", self.metrics_path)
            return
        if self.wandb_id is None:
            self.wandb_id = secrets.token_hex(4)  # kept in the checkpoint so a requeued job resumes this run
        kwargs = dict(
            dir=str(self.run_dir),
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=run_group(cfg),
            name=run_name(cfg),
            tags=sorted({cfg.algorithm.name, _short_dataset(cfg.dataset.id), *cfg.logger.tags}),
            job_type=cfg.logger.job_type,
            config=asdict(cfg),
            id=self.wandb_id,
            resume="allow",
            settings=wandb.Settings(init_timeout=60, silent=True),
        )
        for attempt in [mode, "offline"] if mode == "online" else [mode]:
            try:
                self._wandb = wandb.init(mode=attempt, **kwargs)  # type: ignore[arg-type]
            except Exception as error:  # network, auth, disk: never fatal
                log.warning("W&B failed to start in %s mode (%s: %s)", attempt, type(error).__name__, error)
                continue
            self._wandb.define_metric("step")
            self._wandb.define_metric("*", step_metric="step")
            return
        log.warning("continuing without W&B; metrics are in %s", self.metrics_path)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            try:
                self._wandb.log(row)
            except Exception as error:
                log.warning("W&B log failed (%s); continuing without W&B", error)
                self._finish_wandb(exit_code=1)

    def summary(self, values: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, values)
        if self._wandb is not None:
            try:
                self._wandb.summary.update({k: v for k, v in values.items() if v is not None})
            except Exception as error:
                log.warning("W&B summary update failed (%s)", error)

    def _finish_wandb(self, exit_code: int) -> None:
        run, self._wandb = self._wandb, None
        if run is not None:
            try:
                run.finish(exit_code=exit_code)
            except Exception as error:
                log.warning("W&B finish failed (%s)", error)

    def finish(self, exit_code: int = 0) -> None:
        self._finish_wandb(exit_code)

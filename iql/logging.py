"""Run outputs: always ``metrics.jsonl`` and ``summary.json`` in the run dir, plus a W&B run when enabled.

W&B is offline unless an API key (or ``WANDB_MODE``) says otherwise, and it can never kill a run: a failing
online start falls back to offline, a failing offline start or ``log`` call disables W&B, each with a warning.
"""

from __future__ import annotations

import hashlib
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


def short_dataset(dataset_id: str) -> str:
    """``iql/pendulum/mixed-v0`` → ``pendulum-mixed-v0``: no ``/``, so it is safe in names, tags and paths."""
    parts = dataset_id.split("/")
    return "-".join(parts[1:] if len(parts) > 1 else parts)


def format_value(value: float) -> str:
    """Shortest readable form of a hyperparameter: 0.7 → ``0.7``, 10.0 → ``10``, 3e-4 → ``0.0003``."""
    return f"{value:g}"


def sweep_name(sweep_dir: str | Path) -> str:
    """Name of a sweep from its directory: the folder name, with the date in front for Hydra's default
    ``multirun/<date>/<time>`` layout (``multirun/2026-11-24/16-58-29`` → ``2026-11-24-16-58-29``)."""
    path = Path(sweep_dir)
    name = path.name
    if re.fullmatch(r"\d{2}-\d{2}-\d{2}", name) and path.parent.name:
        name = f"{path.parent.name}-{name}"
    return name


def changes_learning(override: str) -> bool:
    """Whether a ``key=value`` override can change what is learned (seed, hardware, logging cadence cannot)."""
    return not override.lstrip("+~").startswith(_NON_CONFIG_PREFIXES)


def config_overrides(cfg: RunConfig) -> list[str]:
    """Command-line overrides that change what is learned (not seed, hardware, logging cadence)."""
    return sorted(o.lstrip("+~") for o in cfg.overrides if changes_learning(o))


def _other_overrides(cfg: RunConfig) -> list[str]:
    """Learning-relevant overrides besides the dataset, the algorithm, τ and β (which names show on their own)."""
    shown = r"(algorithm\.(expectile|beta|name)|algorithm|dataset|dataset\.id)="
    return [o for o in config_overrides(cfg) if not re.match(shown, o)]


def run_group(cfg: RunConfig) -> str:
    """Seed-independent W&B group, one per sweep and configuration: sweep, dataset, algorithm, τ, β and any other
    learning-relevant override, e.g. ``tau-beta-pendulum-mixed-v0-iql-t0.9-b10`` (at most 128 characters, no ``/``)."""
    if cfg.logger.group:
        return cfg.logger.group
    a = cfg.algorithm
    group = f"{short_dataset(cfg.dataset.id)}-{a.name}"
    if a.name == "iql":
        group += f"-t{format_value(a.expectile)}-b{format_value(a.beta)}"
    rest = _other_overrides(cfg)
    if rest:
        group += "-" + ",".join(rest)
    if cfg.logger.sweep:
        group = f"{cfg.logger.sweep}-{group}"
    group = group.replace("/", "-")
    if len(group) > 128:  # W&B's limit; a digest of the whole keeps configurations that differ at the end apart
        group = f"{group[:119]}-{hashlib.sha1(group.encode()).hexdigest()[:8]}"
    return group


def run_name(cfg: RunConfig) -> str:
    """Readable W&B run name from the overrides, e.g. ``pendulum-mixed-v0 iql τ=0.9 β=10 s2`` (other
    learning-relevant overrides appear by their last key, ``… β=10 layer_norm=true s2``)."""
    if cfg.logger.name:
        return cfg.logger.name
    a = cfg.algorithm
    parts = [short_dataset(cfg.dataset.id), a.name]
    if a.name == "iql":
        parts += [f"τ={format_value(a.expectile)}", f"β={format_value(a.beta)}"]
    for override in _other_overrides(cfg):
        key, equals, value = override.partition("=")
        parts.append(key.rsplit(".", 1)[-1] + equals + value)
    return " ".join([*parts, f"s{cfg.seed}"])


def run_tags(cfg: RunConfig) -> list[str]:
    """W&B tags: algorithm, dataset, sweep (when the run belongs to one) and ``logger.tags`` (≤ 64 characters each)."""
    tags = {cfg.algorithm.name, short_dataset(cfg.dataset.id), *cfg.logger.tags}
    if cfg.logger.sweep:
        tags.add(cfg.logger.sweep)
    return sorted(tag[:64] for tag in tags)


def wandb_config(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as W&B sees it: the nested dataclass dict plus flat ``expectile``, ``beta``,
    ``dataset_id`` and ``sweep`` (``seed`` is already top level), so runs can be grouped and plotted on τ and β.
    BC runs have no τ or β: those are None rather than unused defaults."""
    is_iql = cfg.algorithm.name == "iql"
    return {
        **asdict(cfg),
        "expectile": cfg.algorithm.expectile if is_iql else None,
        "beta": cfg.algorithm.beta if is_iql else None,
        "dataset_id": cfg.dataset.id,
        "sweep": cfg.logger.sweep,
    }


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file, skipping a last row cut short by a kill; [] when the file is missing."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


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


def init_wandb_run(mode: str, **kwargs: Any) -> Any | None:
    """``wandb.init(mode=mode, **kwargs)``; an online start that fails falls back to offline. None, with a warning
    per failed attempt, when W&B is not installed or no attempt starts (network, auth, disk: never fatal)."""
    try:
        import wandb
    except ImportError:
        log.warning("wandb is not installed")
        return None
    settings = wandb.Settings(init_timeout=60, silent=True)
    for attempt in [mode, "offline"] if mode == "online" else [mode]:
        try:
            return wandb.init(mode=attempt, settings=settings, **kwargs)  # type: ignore[arg-type]
        except Exception as error:
            log.warning("W&B failed to start in %s mode (%s: %s)", attempt, type(error).__name__, error)
    return None


class RunLogger:
    """Writes metric rows and the summary to the run dir and, when enabled, to a W&B run (resumed by id)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, wandb_id: str | None = None, resume_step: int = 0) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS_FILE
        # a resumed run recomputes rows the killed attempt already sent to W&B (identical: resume is exact);
        # sending them again would make W&B's history go back in step
        self._wandb_logged_through = self._truncate_metrics_after(resume_step)
        self._wandb: Any = None
        self.wandb_id = wandb_id
        mode = resolve_wandb_mode(cfg.logger)
        if mode != "disabled":
            self._start_wandb(cfg, mode)
        if self._wandb is None:
            log.info("W&B: disabled; metrics in %s", self.metrics_path)
        else:
            started = getattr(getattr(self._wandb, "settings", None), "mode", mode)  # offline after a failed online
            url = f" ({self._wandb.url})" if started == "online" and getattr(self._wandb, "url", None) else ""
            log.info(
                "W&B: %s, run %r in group %r of project %r%s",
                started,
                run_name(cfg),
                run_group(cfg),
                cfg.logger.project,
                url,
            )

    def _truncate_metrics_after(self, step: int) -> int:
        """Drop rows written after the checkpoint we resume from, so ``step`` stays strictly increasing.

        Returns the last step an earlier attempt logged (0 if none): W&B already holds rows up to it.
        """
        if not self.metrics_path.exists():
            return 0
        rows = read_metrics(self.metrics_path)
        kept = [json.dumps(row) + "\n" for row in rows if row.get("step", math.inf) <= step]
        atomic_write_bytes(self.metrics_path, lambda handle: handle.write("".join(kept).encode()))
        return max((int(row["step"]) for row in rows if "step" in row), default=0)

    def _start_wandb(self, cfg: RunConfig, mode: str) -> None:
        if self.wandb_id is None:
            self.wandb_id = secrets.token_hex(4)  # kept in the checkpoint so a requeued job resumes this run
        self._wandb = init_wandb_run(
            mode,
            dir=str(self.run_dir),
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=run_group(cfg),
            name=run_name(cfg),
            tags=run_tags(cfg),
            job_type=cfg.logger.job_type,
            config=wandb_config(cfg),
            id=self.wandb_id,
            resume="allow",
        )
        if self._wandb is None:
            log.warning("continuing without W&B; metrics are in %s", self.metrics_path)
            return
        try:
            self._wandb.define_metric("step")  # the gradient step is the x-axis of every chart
            self._wandb.define_metric("*", step_metric="step")
        except Exception as error:
            log.warning("W&B define_metric failed (%s); continuing without W&B", error)
            self._finish_wandb(exit_code=1)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._wandb is not None and step > self._wandb_logged_through:
            try:
                self._wandb.log(row)
            except Exception as error:
                log.warning("W&B log failed (%s); continuing without W&B", error)
                self._finish_wandb(exit_code=1)

    def summary(self, values: dict[str, Any]) -> None:
        """summary.json, and the W&B summary with ``score`` / ``best_score``: the score of record (``eval.score``)
        of the last evaluation and its maximum over the run's evaluations."""
        write_json_atomic(self.run_dir / SUMMARY_FILE, values)
        if self._wandb is not None:
            metric = values.get("score_of_record")
            record = {"score": values.get(metric), "best_score": values.get(f"best_{metric}")} if metric else {}
            try:
                self._wandb.summary.update({k: v for k, v in {**values, **record}.items() if v is not None})
            except Exception as error:
                log.warning("W&B summary update failed (%s)", error)

    def _finish_wandb(self, exit_code: int) -> None:
        run, self._wandb = self._wandb, None
        if run is not None:
            offline = getattr(getattr(run, "settings", None), "mode", None) == "offline"
            try:
                run.finish(exit_code=exit_code)
            except Exception as error:
                log.warning("W&B finish failed (%s)", error)
            if offline:
                log.info(
                    "W&B run saved offline; upload it with: wandb sync %s", self.run_dir / "wandb" / "offline-run-*"
                )

    def finish(self, exit_code: int = 0) -> None:
        self._finish_wandb(exit_code)

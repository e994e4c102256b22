"""One run: data → learner → train loop → evaluation → logging → checkpoints, resumable from its run dir.

    summary = run(RunConfig(...), Path("outputs/my-run"))

A run dir that already holds a checkpoint is continued exactly (same batches, same dropout masks, same result
as an uninterrupted run); ``metrics.jsonl`` rows written after that checkpoint are dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from iql import checkpoint
from iql.config import RunConfig, validate
from iql.data import DeviceSampler, PreparedData, prepare
from iql.errors import ConfigError, TrainingDivergedError
from iql.evaluation import EvalResult, evaluate
from iql.hardware import keep_freed_memory, resolve_device, thread_count
from iql.learner import make_learner
from iql.logging import RunLogger
from iql.scoring import METRICS, describe, metric_value, score_of_record

log = logging.getLogger(__name__)

# config sections whose change makes an existing checkpoint belong to a different experiment
_IDENTITY_SECTIONS = ("algorithm", "network", "dataset", "seed")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _identity(cfg: RunConfig) -> dict[str, Any]:
    full = dataclasses.asdict(cfg)
    identity = {key: full[key] for key in _IDENTITY_SECTIONS}
    identity["train"] = {"steps": cfg.train.steps, "batch_size": cfg.train.batch_size}
    return identity


def _check_same_experiment(saved: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    current = _identity(cfg)
    diffs = [
        f"{section}: checkpoint {saved.get(section)!r} vs now {current[section]!r}"
        for section in current
        if saved.get(section) != current[section]
    ]
    if diffs:
        raise ConfigError(
            f"The run dir {run_dir} holds a checkpoint of a different configuration ({'; '.join(diffs)}). "
            "Resume with the original overrides, or start in a new directory (hydra.run.dir=...)."
        )


def _eval_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**31)


class Experiment:
    """State of one run between start-up and summary; ``run`` below drives it."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress: bool = True) -> None:
        self.cfg = validate(cfg)
        self.run_dir = run_dir
        self.progress = progress
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise ConfigError(
                f"The output directory {run_dir} is not writable ({error.strerror}). Set hydra.run.dir (or "
                "hydra.sweep.dir) to a folder you can write to."
            ) from error
        self.device = resolve_device(cfg.hardware.device)
        torch.set_num_threads(thread_count(cfg.hardware.threads, cfg.hardware.jobs_per_node))
        keep_freed_memory()
        torch.set_float32_matmul_precision(cfg.hardware.matmul_precision)
        seed_everything(cfg.seed)

        self.data: PreparedData = prepare(cfg.dataset)
        if cfg.train.batch_size > len(self.data):
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} is larger than dataset {cfg.dataset.id} "
                f"({len(self.data)} transitions). Use a batch size ≤ {len(self.data)}."
            )
        self.sampler = DeviceSampler(
            self.data.obs,
            self.data.actions,
            self.data.rewards,
            self.data.next_obs,
            self.data.terminals,
            self.device,
            seed=cfg.seed,
        )
        self.learner = make_learner(
            self.data.obs_dim,
            self.data.act_dim,
            cfg.algorithm,
            cfg.network,
            cfg.train.steps,
            self.device,
            compile=cfg.hardware.compile,
            discrete=self.data.discrete,
        )
        self.elapsed_before = 0.0  # wall time of earlier attempts of this run, seconds
        self.best: dict[str, float | None] = dict.fromkeys(METRICS)  # max over evaluations, per metric
        self.last_eval: EvalResult | None = None
        self.resumed_from: list[int] = []  # steps at which earlier attempts of this run were continued
        wandb_id = None
        saved = checkpoint.load_latest(run_dir)
        if saved is not None:
            _check_same_experiment(saved["identity"], cfg, run_dir)
            self.learner.load_state_dict(saved["learner"])
            self.sampler.load_state_dict(saved["sampler"])
            checkpoint.set_rng_state(saved["rng"])
            self.elapsed_before = float(saved["elapsed_s"])
            self.best.update(
                normalized_score=saved["best_score"],
                return_mean=saved["best_return"],
                success_rate=saved.get("best_success_rate"),
            )
            self.resumed_from = [*saved.get("resumed_from", []), self.learner.step]
            wandb_id = saved.get("wandb_id")
            log.info("resuming %s from step %d", run_dir, self.learner.step)
        self.logger = RunLogger(run_dir, cfg, wandb_id=wandb_id, resume_step=self.learner.step)
        if self.data.ref_min_score is None or self.data.ref_max_score is None:
            log.warning(
                "dataset %s has no reference scores: reporting raw returns, normalized_score is null", cfg.dataset.id
            )

    def evaluate(self, step: int) -> EvalResult:
        result = evaluate(
            self.learner.act,
            self.data.make_eval_env,
            self.cfg.eval.episodes,
            _eval_seed(self.cfg.seed, step),
            self.device,
            self.data.action_scaler,
            self.data.obs_normalizer,
            self.data.ref_min_score,
            self.data.ref_max_score,
            self.cfg.eval.max_episode_steps,
            self.cfg.eval.end_on_success,
        )
        for metric in METRICS:
            value, best = metric_value(result, metric), self.best[metric]
            if value is not None and (best is None or value > best):
                self.best[metric] = value
        self.last_eval = result
        return result

    def save_checkpoint(self, started: float) -> None:
        state = {
            "step": self.learner.step,
            "learner": self.learner.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": checkpoint.rng_state(),
            "identity": _identity(self.cfg),
            "elapsed_s": self.elapsed_before + time.perf_counter() - started,
            "best_score": self.best["normalized_score"],
            "best_return": self.best["return_mean"],
            "best_success_rate": self.best["success_rate"],
            "wandb_id": self.logger.wandb_id,
            "resumed_from": self.resumed_from,
        }
        checkpoint.save(self.run_dir, state)

    def train(self) -> dict[str, Any]:
        cfg, train = self.cfg, self.cfg.train
        started = time.perf_counter()
        first_step = self.learner.step
        train_time = 0.0
        sums: dict[str, torch.Tensor] = {}
        rows = 0
        first_bad = torch.tensor(-1, device=self.device)  # first step with a non-finite loss, tracked on device
        postfix: dict[str, str] = {}
        bar = tqdm(
            total=train.steps,
            initial=first_step,
            desc=f"{cfg.algorithm.name} {cfg.dataset.id}",
            unit="step",
            disable=not self.progress,
            mininterval=1.0 if os.isatty(2) else 30.0,
            dynamic_ncols=True,
        )
        tick = time.perf_counter()
        try:
            for step in range(first_step + 1, train.steps + 1):
                metrics = self.learner.update(self.sampler.sample(train.batch_size))
                for key, value in metrics.items():
                    sums[key] = sums[key] + value if key in sums else value.clone()
                rows += 1
                loss_total = torch.stack([v for k, v in metrics.items() if k.endswith("_loss")]).sum()
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss_total), step, first_bad)
                bar.update()
                is_last = step == train.steps
                if step % train.log_every and step % train.eval_every and step % train.checkpoint_every and not is_last:
                    continue
                # a host sync happens only below, at logging, evaluation and checkpoint steps
                train_time += time.perf_counter() - tick
                self._raise_if_diverged(int(first_bad), step)
                row: dict[str, float] = {}
                if step % train.log_every == 0 or is_last:
                    means = torch.stack(list(sums.values())).div(rows).tolist()
                    row.update({f"train/{k}": v for k, v in zip(sums, means, strict=True)})
                    row["train/actor_lr"] = float(self.learner.actor_scheduler.get_last_lr()[0])
                    row["train/steps_per_s"] = (step - first_step) / max(train_time, 1e-9)
                    sums, rows = {}, 0
                    postfix.update({k.split("/")[1]: f"{v:.3g}" for k, v in row.items() if k.endswith("_loss")})
                if step % train.eval_every == 0 or is_last:
                    result = self.evaluate(step)
                    row.update(result.metrics())
                    metric = score_of_record(cfg.eval.score, result, cfg.dataset.id)
                    postfix["eval"] = describe(metric, metric_value(result, metric))
                if row:
                    row["time/wall_s"] = self.elapsed_before + time.perf_counter() - started
                    self.logger.log(step, row)
                    bar.set_postfix(postfix, refresh=False)
                if step % train.checkpoint_every == 0 or is_last:
                    self.save_checkpoint(started)
                tick = time.perf_counter()
        finally:
            bar.close()
        if self.last_eval is None:  # resumed at the end: the last evaluation was not kept
            self.evaluate(self.learner.step)
        assert self.last_eval is not None
        trained = self.learner.step - first_step
        last = self.last_eval
        return {
            # the metric this run is ranked by (eval.score); best_* are maxima over the run's evaluations
            "score_of_record": score_of_record(cfg.eval.score, last, cfg.dataset.id),
            "success_rate": last.success_rate,
            "best_success_rate": self.best["success_rate"],
            "normalized_score": last.normalized_score,
            "best_normalized_score": self.best["normalized_score"],
            "return_mean": last.return_mean,
            "best_return_mean": self.best["return_mean"],
            "steps": self.learner.step,
            "wall_time_s": self.elapsed_before + time.perf_counter() - started,
            "steps_per_s": trained / train_time if train_time > 0 else None,
            "algorithm": cfg.algorithm.name,
            "expectile": cfg.algorithm.expectile,
            "beta": cfg.algorithm.beta,
            "seed": cfg.seed,
            "dataset_id": cfg.dataset.id,
            "sweep": cfg.logger.sweep,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "eval_episodes": cfg.eval.episodes,
            "run_dir": str(self.run_dir),
            "resumed_from_steps": self.resumed_from,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }

    def _raise_if_diverged(self, first_bad: int, step: int) -> None:
        if first_bad < 0:
            return
        saved = checkpoint.load_latest(self.run_dir)
        kept = (
            f"the last good checkpoint (step {saved['step']}) is kept in {self.run_dir}"
            if saved
            else "no checkpoint had been written yet"
        )
        raise TrainingDivergedError(
            f"A loss became NaN or infinite at step {first_bad} (detected at step {step}); {kept}. Lower the "
            "learning rates or algorithm.beta, or use a reward transform that keeps returns small."
        )


def run(cfg: RunConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate ``cfg`` in ``run_dir`` (resuming a checkpoint there); write and return the summary."""
    experiment = Experiment(cfg, run_dir, progress=progress)
    exit_code = 1
    try:
        summary = experiment.train()
        experiment.logger.summary(summary)
        exit_code = 0
        return summary
    finally:
        experiment.logger.finish(exit_code)

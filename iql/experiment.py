"""One run: data → learner → train loop → evaluation → logging → checkpoints, resumable from its run dir.

    summary = run(RunConfig(...), Path("outputs/my-run"))

A run dir that already holds a checkpoint is continued exactly (same batches, same dropout masks, same result
as an uninterrupted run); ``metrics.jsonl`` rows written after that checkpoint are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from iql import checkpoint
from iql.config import RunConfig, validate
from iql.cpu_share import CpuShare
from iql.data import DeviceSampler, PreparedData, prepare
from iql.errors import ConfigError, TrainingDivergedError
from iql.evaluation import EvalResult, evaluate
from iql.hardware import keep_freed_memory, resolve_device, shares_cores, thread_count
from iql.interrupt import StopOnSignal
from iql.learner import make_learner
from iql.logging import SUMMARY_FILE, RunLogger, short_dataset
from iql.online import FineTuning, ReplayBuffer
from iql.scoring import METRICS, describe, metric_value, score_of_record

log = logging.getLogger(__name__)

# config sections whose change makes an existing checkpoint belong to a different experiment
_IDENTITY_SECTIONS = ("algorithm", "network", "dataset", "online", "seed")


LOSS_LABELS = {"value_loss": "V", "critic_loss": "Q", "actor_loss": "π"}  # loss names on the progress bar


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _identity(cfg: RunConfig) -> dict[str, Any]:
    full = dataclasses.asdict(cfg)
    identity = {key: full[key] for key in _IDENTITY_SECTIONS}
    identity["train"] = {"steps": cfg.train.steps, "batch_size": cfg.train.batch_size}
    return identity


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def total_steps(cfg: RunConfig) -> int:
    """Length of the run's step axis: ``train.steps`` offline updates, then ``online.steps`` environment steps."""
    return cfg.train.steps + cfg.online.steps


def _check_same_experiment(saved: dict[str, Any], saved_step: int, cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to continue a checkpoint of another configuration, naming the keys that differ. ``train.steps`` may
    grow (the run is extended), never fall below the checkpoint's step; not in a fine-tuning run."""
    # a key added to the schema after the checkpoint was written counts as its default (the behaviour then)
    before = {**_flatten(_identity(RunConfig())), **_flatten(saved)}
    now = _flatten(_identity(cfg))
    changed = [
        f"{key}: {before.get(key, '(unset)')!r} → {now.get(key, '(unset)')!r}"
        for key in sorted(before.keys() | now.keys())
        if key != "train.steps" and before.get(key) != now.get(key)
    ]
    if changed:
        raise ConfigError(
            f"The run dir {run_dir} holds a checkpoint of a different configuration: {'; '.join(changed)}. Resume "
            "with the original values, or start in a new directory (hydra.run.dir=...)."
        )
    saved_train_steps = int(saved.get("train", {}).get("steps", cfg.train.steps))
    if cfg.online.steps > 0 and saved_train_steps != cfg.train.steps:
        raise ConfigError(
            f"train.steps: {saved_train_steps} → {cfg.train.steps}: the offline phase of a fine-tuning run "
            f"(online.steps={cfg.online.steps}) cannot change length. Resume with train.steps={saved_train_steps}, "
            "or start in a new directory (hydra.run.dir=...)."
        )
    if total_steps(cfg) < saved_step:
        raise ConfigError(
            f"train.steps={cfg.train.steps} is below the step of the checkpoint in {run_dir} ({saved_step}). "
            f"Use train.steps ≥ {saved_step} to continue it, or start in a new directory (hydra.run.dir=...)."
        )


def _length_change_message(
    run_dir: Path, saved: dict[str, Any], cfg: RunConfig, actor_optimizer: torch.optim.Optimizer
) -> str:
    """What resuming ``saved`` with another ``train.steps`` does to the run and to the actor's learning rate."""
    saved_steps, steps = int(saved["identity"]["train"]["steps"]), cfg.train.steps
    verb = "extending" if steps > saved_steps else "shortening"
    message = f"{verb} {run_dir} from train.steps={saved_steps} to {steps}"
    if cfg.algorithm.actor_schedule != "cosine":
        return f"{message}; the actor's learning rate is constant, so nothing else changes"
    lr_before = saved["learner"]["actor_optimizer"]["param_groups"][0]["lr"]
    lr_now = actor_optimizer.param_groups[0]["lr"]
    stretched = "stretched" if verb == "extending" else "compressed"
    return (
        f"{message}: the actor's cosine learning-rate schedule is {stretched} over the new length, so at step "
        f"{saved['step']} its lr goes from {lr_before:.3g} to {lr_now:.3g} and decays to 0 at step {steps}"
    )


def _eval_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**31)


class Experiment:
    """State of one run between start-up and summary; ``run`` below drives it."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress: bool = True, cpu_share: CpuShare | None = None) -> None:
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
        self.cpu_share = cpu_share  # sets the threads when they are automatic (iql.cpu_share)
        if cpu_share is None:
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
        arrays = (self.data.obs, self.data.actions, self.data.rewards, self.data.next_obs, self.data.terminals)
        online = cfg.online
        if online.steps > 0:  # fine-tuning: the sampler is the replay buffer the online transitions join
            capacity = online.buffer_capacity or online.steps
            self.sampler: DeviceSampler = ReplayBuffer(*arrays, self.device, seed=cfg.seed, capacity=capacity)
        else:
            self.sampler = DeviceSampler(*arrays, self.device, seed=cfg.seed)
        self.learner = make_learner(
            self.data.obs_dim,
            self.data.act_dim,
            cfg.algorithm,
            cfg.network,
            cfg.train.steps,
            self.device,
            compile=cfg.hardware.compile,
            cuda_graphs=cfg.hardware.cuda_graphs,
            discrete=self.data.discrete,
            online_updates=online.steps * online.updates_per_step,
            online_schedule=online.actor_schedule,
        )
        self.online: FineTuning | None = None
        if isinstance(self.sampler, ReplayBuffer):
            self.online = FineTuning(
                online,
                self.data,
                self.sampler,
                self.device,
                cfg.seed,
                goal_terminals=cfg.dataset.goal_terminals,
                end_on_success=cfg.eval.end_on_success,
                max_episode_steps=cfg.eval.max_episode_steps,
            )
        self.offline_scores: dict[str, float | None] | None = None  # the evaluation at the switch to online
        self.elapsed_before = 0.0  # wall time of earlier attempts of this run, seconds
        self.best: dict[str, float | None] = dict.fromkeys(METRICS)  # max over evaluations, per metric
        self.last_eval: EvalResult | None = None
        self.resumed_from: list[int] = []  # steps at which earlier attempts of this run were continued
        wandb_id = None
        self.extended_from: list[int] = []  # train.steps of earlier attempts that this run extends
        saved = checkpoint.load_latest(run_dir)
        if saved is not None:
            _check_same_experiment(saved["identity"], int(saved["step"]), cfg, run_dir)
            self.learner.load_state_dict(saved["learner"])
            self.sampler.load_state_dict(saved["sampler"])
            if self.online is not None and "online" in saved:
                self.online.load_state_dict(saved["online"])
            self.offline_scores = saved.get("offline_scores")
            checkpoint.set_rng_state(saved["rng"])
            self.elapsed_before = float(saved["elapsed_s"])
            self.best.update(
                normalized_score=saved["best_score"],
                return_mean=saved["best_return"],
                success_rate=saved.get("best_success_rate"),
            )
            self.resumed_from = [*saved.get("resumed_from", []), self.position()]
            self.extended_from = list(saved.get("extended_from", []))
            saved_steps = int(saved["identity"]["train"]["steps"])
            if saved_steps != cfg.train.steps:
                self.extended_from.append(saved_steps)
                self.learner.restart_actor_schedule()
                log.warning("%s", _length_change_message(run_dir, saved, cfg, self.learner.actor_optimizer))
            wandb_id = saved.get("wandb_id")
            log.info("resuming %s from step %d of %d", run_dir, self.position(), total_steps(cfg))
            if self.online is not None and self.online.env_steps > 0:
                log.info(
                    "the online phase resumes after %d environment steps (%d online transitions in the buffer); the "
                    "episode that was in flight starts again from a reset",
                    self.online.env_steps,
                    self.sampler.size - self.online.buffer.dataset_size,
                )
        self.logger = RunLogger(run_dir, cfg, wandb_id=wandb_id, resume_step=self.position())
        if self.data.ref_min_score is None or self.data.ref_max_score is None:
            log.warning(
                "dataset %s has no reference scores: reporting raw returns, normalized_score is null", cfg.dataset.id
            )

    def position(self) -> int:
        """The run's step: offline updates so far, then ``train.steps`` + environment steps in the online phase."""
        if self.online is None:
            return self.learner.step
        return min(self.learner.step, self.cfg.train.steps) + self.online.env_steps

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
            "step": self.position(),
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
            "extended_from": self.extended_from,
        }
        if self.online is not None:
            state["online"] = self.online.state_dict()
            state["offline_scores"] = self.offline_scores
        checkpoint.save(self.run_dir, state)

    def train(self) -> dict[str, Any]:
        cfg, train = self.cfg, self.cfg.train
        started = time.perf_counter()
        first_step = self.position()
        total = total_steps(cfg)
        switch = train.steps if self.online is not None else None  # the last offline step, evaluated and saved
        train_time = 0.0
        sums: dict[str, torch.Tensor] = {}
        rows = 0
        first_bad = torch.tensor(-1, device=self.device)  # first step with a non-finite loss, tracked on device
        headline, losses_shown = "", ""  # the bar shows the step, steps/s and the last evaluation first, then losses
        bar = tqdm(
            total=total,
            initial=first_step,
            desc=f"{cfg.algorithm.name} {short_dataset(cfg.dataset.id)}",
            unit="step",
            disable=not self.progress,
            mininterval=1.0 if os.isatty(2) else 30.0,
            dynamic_ncols=True,
        )
        tick = time.perf_counter()
        try:
            with StopOnSignal() as stop:
                for step in range(first_step + 1, total + 1):
                    if self.cpu_share is not None:
                        self.cpu_share.maybe_refresh()
                    if step <= train.steps:
                        updates = [self.learner.update(self.sampler.sample(train.batch_size))]
                    else:  # the online phase: an environment step, then online.updates_per_step updates
                        assert self.online is not None
                        updates = self.online.step(self.learner, train.batch_size)
                    for metrics in updates:
                        for key, value in metrics.items():
                            sums[key] = sums[key] + value if key in sums else value.clone()
                        rows += 1
                    loss_total = torch.stack([v for k, v in metrics.items() if k.endswith("_loss")]).sum()
                    first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss_total), step, first_bad)
                    bar.update()
                    if stop.signum is not None:
                        self._raise_if_diverged(int(first_bad), step)
                        self.save_checkpoint(started)
                        bar.close()
                        stop.hand_over(self._stopped_message(stop.signum, step))
                    is_last = step in (total, switch)  # the end of each phase is logged, evaluated and saved
                    if step % train.log_every and step % train.eval_every and step % train.checkpoint_every:
                        if not is_last:
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
                        if self.online is not None and step > train.steps:
                            row.update(self.online.drain())
                        sums, rows = {}, 0
                        losses_shown = " ".join(
                            f"{LOSS_LABELS.get(k.removeprefix('train/'), k)} {v:.3g}"
                            for k, v in row.items()
                            if k.endswith("_loss")
                        )
                    if step % train.eval_every == 0 or is_last:
                        result = self.evaluate(step)
                        row.update(result.metrics())
                        metric = score_of_record(cfg.eval.score, result, cfg.dataset.id)
                        headline = describe(metric, metric_value(result, metric))
                        log.info("step %d/%d: %s", step, total, self._describe_evaluation(result, metric))
                        if step == switch:
                            self.offline_scores = {name: metric_value(result, name) for name in METRICS}
                            log.info(
                                "offline phase done at step %d; fine-tuning online for %d environment steps",
                                step,
                                cfg.online.steps,
                            )
                    if row:
                        row["time/wall_s"] = self.elapsed_before + time.perf_counter() - started
                        if self.online is not None:  # the switch, as a W&B chart: 0 through train.steps, then 1
                            row["phase/online"] = float(step > train.steps)
                        self.logger.log(step, row)
                        bar.set_postfix_str(" | ".join(filter(None, (headline, losses_shown))), refresh=False)
                    if step % train.checkpoint_every == 0 or is_last:
                        self.save_checkpoint(started)
                    tick = time.perf_counter()
        finally:
            bar.close()
        if self.last_eval is None:  # resumed at the end: the last evaluation was not kept
            self.evaluate(self.position())
        assert self.last_eval is not None
        trained = self.position() - first_step
        last = self.last_eval
        metric = score_of_record(cfg.eval.score, last, cfg.dataset.id)
        summary = {
            # the metric this run is ranked by (eval.score); best_* are maxima over the run's evaluations
            "score_of_record": metric,
            "success_rate": last.success_rate,
            "best_success_rate": self.best["success_rate"],
            "normalized_score": last.normalized_score,
            "best_normalized_score": self.best["normalized_score"],
            "return_mean": last.return_mean,
            "best_return_mean": self.best["return_mean"],
            "steps": self.position(),
            "wall_time_s": self.elapsed_before + time.perf_counter() - started,
            "steps_per_s": trained / train_time if train_time > 0 else None,
            "algorithm": cfg.algorithm.name,
            "expectile": cfg.algorithm.expectile if cfg.algorithm.name == "iql" else None,  # BC uses neither
            "beta": cfg.algorithm.beta if cfg.algorithm.name == "iql" else None,
            "seed": cfg.seed,
            "dataset_id": cfg.dataset.id,
            "sweep": cfg.logger.sweep,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "compile": self.cfg.hardware.compile,  # this attempt's update: one compiled graph, or eager
            "eval_episodes": cfg.eval.episodes,
            "run_dir": str(self.run_dir),
            "resumed_from_steps": self.resumed_from,
            "extended_from_steps": self.extended_from,  # train.steps of the runs this one continued to more steps
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        }
        if self.online is not None:
            summary.update(self._online_summary(metric))
        return summary

    def _online_summary(self, metric: str) -> dict[str, Any]:
        """summary.json's fine-tuning keys: the scores at the switch, the online counts and rates."""
        assert self.online is not None
        offline = self.offline_scores or {}
        return {
            "offline_score": offline.get(metric),  # the score of record at the switch (end of the offline phase)
            **{f"offline_{name}": offline.get(name) for name in METRICS},
            "switch_step": self.cfg.train.steps,
            "online_env_steps": self.online.env_steps,
            "online_episodes": self.online.episodes,
            "online_buffer_size": self.sampler.size,
            "online_updates_per_step": self.cfg.online.updates_per_step,
            # this attempt's online steps: env stepping with acting, and the updates, timed apart
            **{f"online_{key}": value for key, value in self.online.rates().items()},
        }

    def _describe_evaluation(self, result: EvalResult, metric: str) -> str:
        """One ``launch.log`` line per evaluation: the score of record and its best so far, then the other metrics."""
        best = self.best[metric]
        parts = [describe(metric, metric_value(result, metric)) + (f" (best {best:.1f})" if best is not None else "")]
        parts += [describe(other, metric_value(result, other)) for other in METRICS if other != metric]
        parts = [part for part in parts if not part.endswith("n/a")]
        parts.append(f"return std {float(result.returns.std()):.1f}, {len(result.returns)} episodes")
        return ", ".join(parts)

    def _stopped_message(self, signum: int, step: int) -> str:
        overrides = [o for o in self.cfg.overrides if not o.startswith("hydra.run.dir=")]
        if self.cfg.config_source and not any(o.startswith("seed=") for o in overrides):
            overrides.append(f"seed={self.cfg.seed}")  # a sweep may derive it from its job (tau_beta_optuna does)
        args = [*self.cfg.config_source, *overrides, f"hydra.run.dir={self.run_dir}"]
        resume = shlex.join(["python", "launch.py", *args])
        return (
            f"Stopped by {signal.Signals(signum).name} at step {step} of {total_steps(self.cfg)}; checkpoint "
            f"written to {self.run_dir / checkpoint.LATEST}. Resume with: {resume}"
        )

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


def finished_summary(cfg: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of the run in ``run_dir`` if it already trained ``cfg`` to ``train.steps`` (same configuration)."""
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.exists():
        return None
    saved = checkpoint.load_latest(run_dir)
    if saved is None or int(saved["step"]) < total_steps(cfg):
        return None
    _check_same_experiment(saved["identity"], int(saved["step"]), cfg, run_dir)
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary


def run(cfg: RunConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train and evaluate ``cfg`` in ``run_dir`` (resuming a checkpoint there); write and return the summary.

    A run dir whose run already reached ``train.steps`` is left as it is: its summary is returned."""
    finished = finished_summary(validate(cfg), run_dir)
    if finished is not None:
        log.info(
            "%s already holds this run, complete at step %d: nothing to do (raise train.steps to train it longer)",
            run_dir,
            total_steps(cfg),
        )
        return finished
    hardware = cfg.hardware
    cpu_share = (
        CpuShare(thread_count(None), most=thread_count(None, hardware.jobs_per_node))
        if shares_cores(hardware.threads)
        else None
    )
    with cpu_share or contextlib.nullcontext():
        experiment = Experiment(cfg, run_dir, progress=progress, cpu_share=cpu_share)
        exit_code = 1
        try:
            summary = experiment.train()
            experiment.logger.summary(summary)
            exit_code = 0
            return summary
        finally:
            if experiment.online is not None:
                experiment.online.close()
            experiment.logger.finish(exit_code)

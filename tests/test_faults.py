"""Faults during training: divergence, corrupt checkpoints, W&B failures, kills at random moments."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_same_final_weights, launch, launch_and_kill_when

from iql import checkpoint
from iql.config import LoggerConfig, NetworkConfig, RunConfig, TrainConfig
from iql.errors import TrainingDivergedError
from iql.experiment import Experiment
from iql.logging import RunLogger

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "logger=none", "hardware.threads=1"]


def tiny_config(**train: int) -> RunConfig:
    return RunConfig(
        network=NetworkConfig(hidden_dims=[32, 32]),
        logger=LoggerConfig(backend="none"),
        train=TrainConfig(batch_size=64, **train),
    )


def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, pendulum_dataset: str
) -> None:
    experiment = Experiment(
        tiny_config(steps=400, log_every=50, eval_every=400, checkpoint_every=100), tmp_path, progress=False
    )
    experiment.cfg.eval.episodes = 1
    update = experiment.learner.update

    def update_that_diverges_at_step_230(batch):  # type: ignore[no-untyped-def]
        metrics = update(batch)
        if experiment.learner.step >= 230:
            metrics["critic_loss"] = metrics["critic_loss"] * float("nan")
        return metrics

    experiment.learner.update = update_that_diverges_at_step_230  # type: ignore[method-assign]
    with pytest.raises(TrainingDivergedError, match=r"at step 230 .*checkpoint \(step 200\)"):
        experiment.train()
    assert checkpoint.load_latest(tmp_path)["step"] == 200  # type: ignore[index]
    assert max(json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()) == 200


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path: Path, pendulum_dataset: str) -> None:
    args = [*TINY, "train.steps=300", "train.log_every=50", "train.eval_every=300", "train.checkpoint_every=100"]
    assert launch(*args, run_dir=tmp_path).returncode == 0
    (tmp_path / "summary.json").unlink()
    latest = tmp_path / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # cut short, as by a full disk
    result = launch(*args, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr  # Hydra's console log handler writes to stdout
    assert "unreadable" in output and "trying the previous one" in output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["resumed_from_steps"] == [200]


def test_wandb_failures_never_stop_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    modes = []

    def failing_init(**kwargs):  # type: ignore[no-untyped-def]
        modes.append(kwargs["mode"])
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(wandb, "init", failing_init)
    cfg = RunConfig(logger=LoggerConfig(mode="online"))
    logger = RunLogger(tmp_path, cfg)
    logger.log(10, {"train/critic_loss": 1.0})
    logger.summary({"normalized_score": 50.0})
    logger.finish()
    assert modes == ["online", "offline"]  # online failed, offline tried, then W&B is skipped
    assert "W&B failed to start in online mode" in caplog.text and "continuing without W&B" in caplog.text
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 10
    assert json.loads((tmp_path / "summary.json").read_text())["normalized_score"] == 50.0


def test_wandb_log_failure_keeps_local_metrics(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logger = RunLogger(tmp_path, RunConfig(logger=LoggerConfig(mode="offline")))
    assert logger._wandb is not None

    def broken_log(row: dict) -> None:
        raise OSError("No space left on device")

    logger._wandb.log = broken_log
    logger.log(1, {"a": 1.0})
    logger.log(2, {"a": 2.0})
    logger.finish()
    assert "W&B log failed" in caplog.text
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_random_sigkills_end_with_the_uninterrupted_weights(tmp_path: Path, pendulum_dataset: str) -> None:
    # long enough that 5 attempts, each killed within ~5 s of its start (~3 s of it start-up), cannot finish it: at
    # ~800 steps/s they train ≤ 5 × 2 s × 800 = 8,000 steps (6,000 steps were finished by the 5th attempt once)
    args = [*TINY, "train.steps=15000", "train.log_every=50", "train.eval_every=5000", "train.checkpoint_every=100"]
    reference = tmp_path / "reference"
    assert launch(*args, run_dir=reference).returncode == 0

    run_dir = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    while kills < 5:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "launch.py"), *args, f"hydra.run.dir={run_dir}"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.5, 5.0))  # start-up, data loading, training, evaluation or a checkpoint write
        if process.poll() is not None:
            break  # finished before this kill: fails below, the run must be killed 5 times
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills == 5, "the run finished before it was killed 5 times; lengthen train.steps"
    result = launch(*args, run_dir=run_dir)
    assert result.returncode == 0, result.stderr

    assert_same_weights_and_metric_rows(run_dir, reference, steps=15000, log_every=50)


def assert_same_weights_and_metric_rows(run_dir: Path, reference: Path, steps: int, log_every: int) -> None:
    """The resumed run ends with the uninterrupted run's networks, bit for bit, and logged every row once."""
    assert assert_same_final_weights(run_dir, reference) == steps
    rows = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(log_every, steps + 1, log_every))


@pytest.mark.slow
def test_compiled_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, pendulum_dataset: str
) -> None:
    """hardware.compile=true: the resumed learner re-binds the compiled step to the loaded Adam state (~1 min)."""
    args = [*TINY, "hardware.compile=true", "train.steps=3000", "train.log_every=50", "train.checkpoint_every=100"]
    reference = tmp_path / "reference"
    assert launch(*args, run_dir=reference).returncode == 0

    run_dir = tmp_path / "killed"
    exit_code = launch_and_kill_when(run_dir / "checkpoint.pt", *args, run_dir=run_dir)
    assert exit_code == -signal.SIGKILL, "the run ended before its first checkpoint could be interrupted"
    assert checkpoint.load_latest(run_dir) is not None
    result = launch(*args, run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from_steps"][0] >= 100
    assert_same_weights_and_metric_rows(run_dir, reference, steps=3000, log_every=50)


@pytest.mark.slow
def test_a_run_dir_continues_in_the_other_mode(tmp_path: Path, pendulum_dataset: str) -> None:
    """Checkpoints are the same in both modes: a run trained eagerly continues compiled (here: extended to more
    steps) and ends where the eager continuation of the same checkpoint ends, to float tolerance (two graphs of the
    same arithmetic round differently)."""
    args = [*TINY, "train.log_every=50", "train.eval_every=1000"]
    compiled_dir, eager_dir = tmp_path / "compiled", tmp_path / "eager"
    assert launch(*args, "train.steps=200", run_dir=compiled_dir).returncode == 0
    shutil.copytree(compiled_dir, eager_dir)
    for run_dir, mode in ((compiled_dir, "true"), (eager_dir, "false")):
        result = launch(*args, "train.steps=300", f"hardware.compile={mode}", run_dir=run_dir)
        assert result.returncode == 0, result.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["extended_from_steps"] == [200] and summary["compile"] == (mode == "true")
    final, expected = (
        torch.load(d / "checkpoint.pt", weights_only=False)["learner"] for d in (compiled_dir, eager_dir)
    )
    assert final["step"] == expected["step"] == 300
    for net in ("critic", "target_critic", "value", "actor"):
        for name, tensor in expected[net].items():
            torch.testing.assert_close(final[net][name], tensor, rtol=1e-3, atol=1e-4, msg=f"{net}.{name}")

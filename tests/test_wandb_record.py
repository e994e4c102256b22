"""What a short offline run writes to W&B, read back from its .wandb file: config, group, history and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import launch
from wandb_records import read_offline_run

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2"]


def test_offline_run_records_config_group_history_and_summary(tmp_path: Path, pendulum_dataset: str) -> None:
    overrides = [*TINY, "train.steps=300", "train.log_every=100", "algorithm.expectile=0.9", "algorithm.beta=10"]
    result = launch(*overrides, "seed=2", "logger.sweep=tau-beta", run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    run = read_offline_run(tmp_path)

    # the resolved config, nested and flat, so W&B can group and plot on τ and β
    assert run.config["algorithm"]["expectile"] == 0.9 and run.config["algorithm"]["beta"] == 10
    assert (run.config["expectile"], run.config["beta"], run.config["seed"]) == (0.9, 10, 2)
    assert run.config["dataset_id"] == pendulum_dataset and run.config["sweep"] == "tau-beta"

    # one group per sweep and configuration: no seed, no '/' from the dataset id
    group = run.run.run_group
    assert group.startswith("tau-beta-pendulum-mixed-v0-iql-t0.9-b10") and "/" not in group and "seed" not in group
    assert run.run.job_type == "train"
    assert {"iql", "pendulum-mixed-v0", "tau-beta"} <= set(run.run.tags)
    assert run.run.display_name.startswith("pendulum-mixed-v0 iql τ=0.9 β=10") and run.run.display_name.endswith(" s2")

    # the gradient step is the x-axis, and rows come every train.log_every steps, not every step
    assert any(m.name == "step" for m in run.metrics)
    assert any(m.glob_name == "*" and m.step_metric == "step" for m in run.metrics)
    assert [row["step"] for row in run.history] == [100, 200, 300]
    assert all("train/critic_loss" in row for row in run.history)
    assert run.history[-1]["eval/normalized_score"] == pytest.approx(summary["normalized_score"], rel=1e-12)

    # the final summary holds the final and best normalized score of summary.json
    assert run.summary["normalized_score"] == pytest.approx(summary["normalized_score"], rel=1e-12)
    assert run.summary["best_normalized_score"] == pytest.approx(summary["best_normalized_score"], rel=1e-12)
    assert run.summary["step"] == 300
    # the score of record (eval.score=auto: Pendulum reports no success, so the normalized score) as score/best_score
    assert summary["score_of_record"] == "normalized_score"
    assert run.summary["score"] == pytest.approx(summary["normalized_score"], rel=1e-12)
    assert run.summary["best_score"] == pytest.approx(summary["best_normalized_score"], rel=1e-12)
    assert run.exit_code == 0

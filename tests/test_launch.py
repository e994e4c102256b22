"""The real entry point, as a user runs it: outputs, other datasets, clear errors, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_same_final_weights, kill_and_resume, launch

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2"]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_the_run_dir_contract(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(
        *TINY,
        "train.steps=300",
        "train.log_every=100",
        "train.eval_every=150",
        "train.checkpoint_every=150",
        run_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "normalized_score",
        "best_normalized_score",
        "return_mean",
        "steps",
        "wall_time_s",
        "steps_per_s",
        "expectile",
        "beta",
        "seed",
        "dataset_id",
    ):
        assert key in summary, key
    assert summary["steps"] == 300 and summary["dataset_id"] == pendulum_dataset
    assert summary["score_of_record"] == "normalized_score"  # Pendulum reports no success
    assert summary["success_rate"] is None and summary["best_success_rate"] is None
    assert (summary["expectile"], summary["beta"]) == (0.7, 3.0)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [100, 150, 200, 300]
    assert rows[-1]["eval/normalized_score"] == pytest.approx(summary["normalized_score"])
    assert summary["best_normalized_score"] >= summary["normalized_score"]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / ".hydra" / "overrides.yaml").exists()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb")), "no offline W&B run was written"
    log_lines = (tmp_path / "launch.log").read_text().splitlines()
    assert any("W&B: offline, run 'pendulum-mixed-v0 iql τ=0.7 β=3" in line for line in log_lines[:5])  # at start
    evaluations = [line.split(" - step ")[1] for line in log_lines if " - step " in line]
    assert [line.split(":")[0] for line in evaluations] == ["150/300", "300/300"]  # one line per evaluation
    assert all("normalized score" in line and "return" in line for line in evaluations)
    assert f"wandb sync {tmp_path / 'wandb'}" in log_lines[-2] + log_lines[-1]  # and how to upload, at the end
    # the progress bar: step, rate and the last evaluation first, the losses after
    bar = [line for line in result.stderr.replace("\r", "\n").splitlines() if "300/300" in line and "|" in line][-1]
    assert bar.index("step/s") < bar.index("normalized score") < bar.index(" V ") < bar.index(" Q ")


def test_bc_baseline_runs_on_the_same_data(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(*TINY, "algorithm=bc", "train.steps=200", "logger=none", run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algorithm"] == "bc" and summary["steps"] == 200
    assert (summary["expectile"], summary["beta"]) == (None, None)  # BC uses neither: no point at τ 0.7, β 3
    assert "train/critic_loss" not in read_metrics(tmp_path)[-1]
    assert not (tmp_path / "wandb").exists()


def test_another_minari_dataset_trains_without_code_change(tmp_path: Path) -> None:
    result = launch(*TINY, "dataset=inverted_pendulum_mixed", "train.steps=200", "logger=none", run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset_id"] == "iql/inverted-pendulum/mixed-v0"
    assert summary["normalized_score"] is not None


def test_killed_run_resumes_to_identical_weights(tmp_path: Path, pendulum_dataset: str) -> None:
    args = [
        *TINY,
        "train.steps=600",
        "train.log_every=50",
        "train.eval_every=300",
        "train.checkpoint_every=100",
        "logger=none",
        "hardware.threads=1",
    ]
    interrupted, reference = kill_and_resume(args, tmp_path)
    assert_same_final_weights(interrupted, reference)
    steps = [row["step"] for row in read_metrics(interrupted)]
    assert steps == sorted(set(steps)) and steps[-1] == 600
    assert json.loads((interrupted / "summary.json").read_text())["steps"] == 600

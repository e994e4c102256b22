"""W&B naming conventions: seed-independent groups per sweep and configuration, readable names, tags, config."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from iql.config import AlgorithmConfig, LoggerConfig, RunConfig
from iql.logging import read_metrics, run_group, run_name, run_tags, sweep_name, wandb_config


def config(
    expectile: float = 0.9, beta: float = 10.0, seed: int = 2, sweep: str | None = None, extra: tuple[str, ...] = ()
) -> RunConfig:
    """A run as launch.py would build it from ``algorithm.expectile=… algorithm.beta=… seed=… [extra]``."""
    overrides = [f"algorithm.expectile={expectile}", f"algorithm.beta={beta}", f"seed={seed}", "hardware.threads=1"]
    return RunConfig(
        algorithm=AlgorithmConfig(expectile=expectile, beta=beta),
        logger=LoggerConfig(sweep=sweep),
        seed=seed,
        overrides=[*overrides, *extra],
    )


def test_group_is_per_sweep_and_configuration_and_seed_independent() -> None:
    assert run_group(config(seed=0)) == run_group(config(seed=1)) == "pendulum-mixed-v0-iql-t0.9-b10"
    assert run_group(config(beta=3)) != run_group(config(beta=10))
    assert run_group(config(sweep="grid")) == "grid-pendulum-mixed-v0-iql-t0.9-b10"
    assert run_group(config(extra=("network.layer_norm=true",))).endswith("-network.layer_norm=true")
    with_id = config(extra=("dataset.id=mujoco/hopper/medium-v0",))
    with_id.dataset = replace(with_id.dataset, id="mujoco/hopper/medium-v0")
    assert run_group(with_id) == "hopper-medium-v0-iql-t0.9-b10"  # no '/', and the id is not repeated
    bc = config()
    bc.algorithm.name = "bc"
    assert run_group(bc) == "pendulum-mixed-v0-bc"


def test_run_name_reads_like_the_overrides() -> None:
    assert run_name(config()) == "pendulum-mixed-v0 iql τ=0.9 β=10 s2"
    assert run_name(config(extra=("network.layer_norm=true",))) == "pendulum-mixed-v0 iql τ=0.9 β=10 layer_norm=true s2"


def test_tags_hold_algorithm_dataset_and_sweep() -> None:
    assert run_tags(config(sweep="grid")) == ["grid", "iql", "pendulum-mixed-v0"]
    assert run_tags(config()) == ["iql", "pendulum-mixed-v0"]


def test_wandb_config_has_flat_keys_for_grouping() -> None:
    logged = wandb_config(config(sweep="grid"))
    assert (logged["expectile"], logged["beta"], logged["seed"], logged["sweep"]) == (0.9, 10.0, 2, "grid")
    assert logged["dataset_id"] == "iql/pendulum/mixed-v0" and logged["algorithm"]["expectile"] == 0.9
    bc = config()
    bc.algorithm.name = "bc"
    assert (wandb_config(bc)["expectile"], wandb_config(bc)["beta"]) == (None, None)


def test_sweep_name_from_the_sweep_dir() -> None:
    assert sweep_name("multirun/2026-11-24/16-58-29") == "2026-11-24-16-58-29"
    assert sweep_name("/scratch/me/tau-beta") == "tau-beta"


def test_read_metrics_skips_a_row_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 100, "x": 1.0}\n{"step": 200, "x"')
    assert read_metrics(path) == [{"step": 100, "x": 1.0}]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_resume_keeps_wandb_history_monotone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iql.logging import RunLogger

    sent: list[int] = []

    class RecordingRun:
        def log(self, row: dict) -> None:
            sent.append(row["step"])

        def finish(self, exit_code: int = 0) -> None:
            pass

    def start(self: RunLogger, cfg: RunConfig, mode: str) -> None:
        self._wandb = RecordingRun()

    monkeypatch.setattr(RunLogger, "_start_wandb", start)
    first = RunLogger(tmp_path, RunConfig(logger=LoggerConfig(mode="offline")))
    for step in (100, 200, 300, 400, 500):  # killed after step 500, last checkpoint at 300
        first.log(step, {"train/critic_loss": 1.0})
    resumed = RunLogger(tmp_path, RunConfig(logger=LoggerConfig(mode="offline")), resume_step=300)
    for step in (400, 500, 600):
        resumed.log(step, {"train/critic_loss": 1.0})
    assert sent == [100, 200, 300, 400, 500, 600]  # W&B never goes back in step
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in rows] == [100, 200, 300, 400, 500, 600]


def test_long_groups_stay_distinct() -> None:
    long = "x" * 150
    a = RunConfig(overrides=[f"network.hidden_dims=[{long},1]"], logger=LoggerConfig(sweep="s"))
    b = RunConfig(overrides=[f"network.hidden_dims=[{long},2]"], logger=LoggerConfig(sweep="s"))
    assert len(run_group(a)) <= 128 and run_group(a) != run_group(b)

"""Ready sweeps compose, narrow on the command line, and run in parallel on one machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, launch, sweep_summaries

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "logger=none", "train.steps=100"]
SWEEPS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes(sweep: str) -> None:
    result = launch("-cd", "sweeps", "-cn", sweep, "--cfg", "hydra")
    assert result.returncode == 0, result.stderr
    assert "mode: MULTIRUN" in result.stdout and "params:" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "batch"),
    [
        ([], 4),
        (["hydra/launcher=submitit_local", "hardware.jobs_per_node=4"], 4),
        (["hardware=slurm"], 8),
        (["hardware=slurm_gpu", "hardware.slurm.array_parallelism=12"], 12),
        (["hardware=slurm", "hydra.sweeper.n_jobs=3"], 3),
    ],
)
def test_optuna_trials_run_in_batches_of_the_slurm_array_parallelism(overrides: list[str], batch: int) -> None:
    """On SLURM a batch of trials is one job array filling its parallel slots; elsewhere 4 trials; n_jobs wins."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from iql.config import RunConfig

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(REPO / "sweeps"), version_base="1.3"):  # -cd sweeps: conf/ stays
        cfg = compose(
            "tau_beta_optuna",
            overrides=[*overrides, f"hydra.searchpath=[file://{REPO / 'conf'}]"],
            return_hydra_config=True,
        )
    sweeper = instantiate(cfg.hydra.sweeper)  # as Hydra builds it: interpolations resolved against the whole config
    assert sweeper.sweeper.n_jobs == batch
    if "slurm" in " ".join(overrides) and "hydra.sweeper.n_jobs=3" not in overrides:
        assert cfg.hydra.launcher.array_parallelism == batch
    container = OmegaConf.to_container(cfg)
    assert isinstance(container, dict) and container["seed"] == "${hydra:job.num}", "each trial runs its own seed"


@pytest.mark.slow
def test_local_parallel_sweep_runs_every_job_with_one_thread(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(
        "-cd",
        "sweeps",
        "-cn",
        "tau",
        "hardware=local_parallel",
        "algorithm.expectile=0.6,0.8",
        "seed=0,1",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sweep_summaries(tmp_path)
    assert sorted((s["expectile"], s["seed"]) for s in summaries) == [(0.6, 0), (0.6, 1), (0.8, 0), (0.8, 1)]
    assert all(s["threads"] == 1 and s["steps"] == 100 for s in summaries)


@pytest.mark.slow
def test_optuna_search_runs_in_parallel_locally_and_resumes(tmp_path: Path, pendulum_dataset: str) -> None:
    import optuna

    search = ["-cd", "sweeps", "-cn", "tau_beta_optuna", *TINY, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
    parallel = ["hydra/launcher=submitit_local", "hardware.jobs_per_node=2"]
    first, second = tmp_path / "first", tmp_path / "second"
    result = launch(*search, *parallel, f"hydra.sweep.dir={first}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(s["threads"] == 1 for s in sweep_summaries(first)) and len(sweep_summaries(first)) == 2
    assert sorted(s["seed"] for s in sweep_summaries(first)) == [0, 1], "each trial runs its job number as seed"

    resume = [f"hydra.sweeper.storage=sqlite:///{first}/optuna.db", "hydra.sweeper.sampler.seed=1"]
    result = launch(*search, *resume, f"hydra.sweep.dir={second}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(sweep_summaries(second)) == 2 and not (second / "optuna.db").exists()
    study = optuna.load_study(study_name="tau_beta", storage=f"sqlite:///{first}/optuna.db")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE"] * 4, (
        "the second sweep did not continue the study"
    )
    first_pairs = {(s["expectile"], s["beta"]) for s in sweep_summaries(first)}
    assert first_pairs.isdisjoint((s["expectile"], s["beta"]) for s in sweep_summaries(second))

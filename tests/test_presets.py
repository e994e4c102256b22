"""Every preset composes, and each paper domain's preset carries the paper's setup (IQL Table 5, official configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from iql.config import RunConfig, validate

CONF = Path(__file__).resolve().parents[1] / "conf"
ConfigStore.instance().store(name="run_schema", node=RunConfig)


def composed(*overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    run_config = OmegaConf.to_object(cfg)
    assert isinstance(run_config, RunConfig)
    return validate(run_config)


# domain → (τ, β, actor dropout, reward transform, goal terminals, eval episodes, eval.score, end on success)
PAPER = {
    "locomotion": (0.7, 3.0, 0.0, "locomotion", False, 10, "normalized_return", False),
    "antmaze": (0.9, 10.0, 0.0, "antmaze", True, 100, "success_rate", True),
    "kitchen": (0.7, 0.5, 0.1, "none", False, 10, "normalized_return", False),
    "adroit": (0.7, 0.5, 0.1, "none", False, 10, "normalized_return", False),
    "pointmaze": (0.9, 10.0, 0.0, "antmaze", True, 50, "success_rate", True),
}
ALL_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
FINETUNING = [name for name in ALL_EXPERIMENTS if name.endswith("_finetune")]  # offline-to-online presets
EXPERIMENTS = [name for name in ALL_EXPERIMENTS if name not in FINETUNING]
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))


def domain_of(dataset: str) -> str | None:
    prefixes = {"mujoco_": "locomotion", "antmaze_": "antmaze", "kitchen_": "kitchen", "pointmaze_": "pointmaze"}
    prefixes |= dict.fromkeys(("pen_", "door_", "hammer_", "relocate_"), "adroit")
    return next((domain for prefix, domain in prefixes.items() if dataset.startswith(prefix)), None)


def setup(cfg: RunConfig) -> tuple:
    a, d, e = cfg.algorithm, cfg.dataset, cfg.eval
    return (
        a.expectile,
        a.beta,
        cfg.network.actor_dropout,
        d.reward_transform,
        d.goal_terminals,
        e.episodes,
        e.score,
        e.end_on_success,
    )


def test_every_domain_has_an_experiment() -> None:
    assert sorted(PAPER) == EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_sets_the_papers_setup(experiment: str) -> None:
    cfg = composed(f"experiment={experiment}")
    assert setup(cfg) == PAPER[experiment]
    assert cfg.algorithm.name == "iql" and cfg.algorithm.discount == 0.99 and cfg.algorithm.polyak_rate == 0.005
    if experiment != "pointmaze":
        assert cfg.train.steps == 1_000_000  # the paper's budget


def test_online_phase_is_off_unless_asked_for() -> None:
    assert composed().online.steps == 0
    for experiment in EXPERIMENTS:
        assert composed(f"experiment={experiment}").online.steps == 0, experiment


@pytest.mark.parametrize("experiment", FINETUNING)
def test_finetuning_presets_add_an_online_phase(experiment: str) -> None:
    cfg = composed(f"experiment={experiment}")
    assert cfg.online.steps > 0 and cfg.online.updates_per_step == 1 and cfg.online.actor_schedule == "constant"
    domain = experiment.removesuffix("_finetune")
    if domain in PAPER:  # the domain's offline setup, unchanged
        assert setup(cfg) == PAPER[domain]


def test_antmaze_finetuning_is_the_official_one() -> None:
    # official train_finetune.py + antmaze_finetune_config.py: 1M + 1M steps, no lr decay at all, a 2M buffer
    cfg = composed("experiment=antmaze_finetune", "dataset=antmaze_medium_play")
    assert (cfg.train.steps, cfg.online.steps, cfg.online.buffer_capacity) == (1_000_000, 1_000_000, None)
    assert cfg.algorithm.actor_schedule == "constant" and cfg.train.eval_every == 100_000
    assert cfg.dataset.id == "D4RL/antmaze/medium-play-v1"


@pytest.mark.parametrize("dataset", [d for d in DATASETS if domain_of(d)])
def test_every_domain_dataset_with_its_experiment(dataset: str) -> None:
    domain = domain_of(dataset)
    assert domain is not None
    cfg = composed(f"experiment={domain}", f"dataset={dataset}")
    assert setup(cfg) == PAPER[domain]


@pytest.mark.parametrize("dataset", [d for d in DATASETS if domain_of(d)])
def test_a_domain_dataset_alone_picks_its_algorithm(dataset: str) -> None:
    domain = domain_of(dataset)
    assert domain is not None
    cfg = composed(f"dataset={dataset}")
    expected = PAPER[domain]
    assert setup(cfg)[:5] == expected[:5]  # τ, β, dropout, reward transform, goal terminals


@pytest.mark.parametrize("dataset", [d for d in DATASETS if domain_of(d) == "adroit"])
def test_an_adroit_dataset_alone_is_scored_by_return(dataset: str) -> None:
    # Adroit's envs report info["success"]: eval.score=auto would rank by success and end episodes at the first one
    assert setup(composed(f"dataset={dataset}"))[5:] == PAPER["adroit"][5:]


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_preset_composes(dataset: str) -> None:
    assert composed(f"dataset={dataset}").dataset.id


def test_the_command_line_wins_over_presets() -> None:
    cfg = composed("experiment=antmaze", "dataset=antmaze_large_play", "algorithm=bc", "dataset.goal_terminals=false")
    assert cfg.algorithm.name == "bc" and cfg.dataset.id == "D4RL/antmaze/large-play-v1"
    assert not cfg.dataset.goal_terminals and cfg.eval.episodes == 100


def test_kitchen_algorithm_sets_actor_dropout() -> None:
    assert composed("algorithm=iql_kitchen").network.actor_dropout == 0.1
    assert composed().network.actor_dropout == 0.0

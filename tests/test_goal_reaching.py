"""Goal reaching: episodes end at the first success, success rate is the score of record, goal transitions are
terminal for the Bellman target only when asked, and the local PointMaze datasets are real Minari datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import launch, require_robotics

from iql.config import DatasetConfig
from iql.data import flatten_episodes, open_dataset, prepare, recipes
from iql.data.maze import MEDIUM_MAP, UMAZE_MAP, distances, find_cell, next_hops
from iql.data.transforms import ActionScaler, ObsNormalizer
from iql.data.transitions import Transitions, bellman_terminals, reached_goal
from iql.evaluation import EvalResult, evaluate
from iql.losses import td_target
from iql.scoring import score_of_record

require_robotics()


class ReachAt(gym.Env):
    """A 1-D env that reports ``success`` from step ``k`` on (and forever after), reward 1 while successful;
    it never terminates, like a continuing Gymnasium-Robotics maze. ``k=None``: reports no success at all."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, k: int | None) -> None:
        self.k, self.t = k, 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), ({"success": False} if self.k else {})

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        if self.k is None:
            return np.zeros(1, np.float32), 0.5, False, False, {}
        success = self.t >= self.k
        return np.full(1, self.t, np.float32), float(success), False, False, {"success": success}


def run_eval(k: int | None, episodes: int = 3, limit: int = 20, end_on_success: bool = True) -> EvalResult:
    scaler = ActionScaler.from_space(ReachAt.action_space)
    return evaluate(
        lambda obs: torch.zeros(len(obs), 1),
        lambda: gym.wrappers.TimeLimit(ReachAt(k), limit),
        episodes,
        seed=0,
        device=torch.device("cpu"),
        action_scaler=scaler,
        obs_normalizer=ObsNormalizer(),
        ref_min=0.0,
        ref_max=1.0,
        end_on_success=end_on_success,
    )


def test_episode_that_succeeds_at_step_k_ends_there_and_counts_once() -> None:
    result = run_eval(k=7)
    np.testing.assert_array_equal(result.lengths, [7, 7, 7])
    np.testing.assert_array_equal(result.returns, [1.0, 1.0, 1.0])  # the success step's reward, nothing after
    np.testing.assert_array_equal(result.successes, [True, True, True])
    assert result.success_rate == 100.0 and result.normalized_score == 100.0
    assert result.metrics()["eval/success_rate"] == 100.0


def test_episode_that_never_succeeds_runs_to_its_limit() -> None:
    result = run_eval(k=50, limit=20)
    np.testing.assert_array_equal(result.lengths, [20, 20, 20])
    assert result.success_rate == 0.0 and result.return_mean == 0.0


def test_full_episodes_when_success_does_not_end_them() -> None:
    result = run_eval(k=7, limit=20, end_on_success=False)  # Adroit: scored by return, reports success too
    np.testing.assert_array_equal(result.lengths, [20, 20, 20])
    np.testing.assert_array_equal(result.returns, [14.0, 14.0, 14.0])
    assert result.success_rate == 100.0


def test_env_without_success_has_no_success_rate() -> None:
    result = run_eval(k=None)
    assert result.successes is None and result.success_rate is None
    assert "eval/success_rate" not in result.metrics()
    assert score_of_record("auto", result) == "normalized_score"


def test_score_of_record() -> None:
    reached = run_eval(k=7)
    assert score_of_record("auto", reached) == "success_rate"
    assert score_of_record("success_rate", reached) == "success_rate"
    assert score_of_record("normalized_return", reached) == "normalized_score"
    no_refs = EvalResult(np.zeros(2), np.ones(2, np.int64), None, None)
    assert score_of_record("auto", no_refs) == score_of_record("normalized_return", no_refs) == "return_mean"


def transitions(rewards: list[float], successes: list[bool] | None, terminals: list[float]) -> Transitions:
    n = len(rewards)
    return Transitions(
        obs=np.zeros((n, 2), np.float32),
        actions=np.zeros((n, 1), np.float32),
        rewards=np.asarray(rewards, np.float32),
        next_obs=np.zeros((n, 2), np.float32),
        terminals=np.asarray(terminals, np.float32),
        episode_ends=np.zeros(n, bool),
        successes=None if successes is None else np.asarray(successes),
    )


def test_goal_transitions_are_terminal_only_when_the_option_is_on() -> None:
    t = transitions([0, 0, 1, 1, 0], [False, False, True, True, False], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(bellman_terminals(t, goal_terminals=False), [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(bellman_terminals(t, goal_terminals=True), [0, 1, 1, 1, 0])


def test_goal_is_read_from_success_infos_else_from_a_positive_reward() -> None:
    recorded = transitions([0, 1, 0], [False, False, True], [0, 0, 0])  # infos win over the reward
    np.testing.assert_array_equal(reached_goal(recorded), [False, False, True])
    sparse = transitions([0, 1, 0], None, [0, 0, 0])
    np.testing.assert_array_equal(reached_goal(sparse), [False, True, False])


def test_maze_planner_follows_shortest_paths() -> None:
    start, goal = find_cell(UMAZE_MAP, "r"), find_cell(UMAZE_MAP, "g")
    assert distances(UMAZE_MAP, goal)[start] == 6  # around the U
    hops = next_hops(MEDIUM_MAP)
    here, steps = find_cell(MEDIUM_MAP, "r"), 0
    while here != find_cell(MEDIUM_MAP, "g"):
        here, steps = hops[(here, find_cell(MEDIUM_MAP, "g"))], steps + 1
    assert steps == distances(MEDIUM_MAP, find_cell(MEDIUM_MAP, "g"))[find_cell(MEDIUM_MAP, "r")]


@pytest.fixture(scope="module")
def umaze(minari_root: Path) -> str:
    recipe = recipes.RECIPES["pointmaze-umaze-mixed"]
    recipes.build(recipe, progress=False)
    return recipe.dataset_id


def test_pointmaze_dataset_is_a_goal_reaching_minari_dataset(umaze: str) -> None:
    dataset = open_dataset(DatasetConfig(id=umaze))
    assert set(dataset.observation_space.spaces) == {"observation", "achieved_goal", "desired_goal"}
    meta = dataset.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (0.0, 1.0)  # random never, controller always succeeds
    t = flatten_episodes(dataset)
    generic = flatten_episodes(dataset, fast=False)
    assert t.successes is not None and generic.successes is not None
    np.testing.assert_array_equal(t.successes, generic.successes)
    np.testing.assert_array_equal(t.successes, t.rewards > 0)  # sparse reward: 1 exactly where successful
    assert t.terminals.sum() == 0  # a continuing task: nothing terminates by itself
    on = prepare(DatasetConfig(id=umaze, goal_terminals=True, reward_transform="antmaze"))
    off = prepare(DatasetConfig(id=umaze, goal_terminals=False, reward_transform="antmaze"))
    np.testing.assert_array_equal(on.terminals, t.successes.astype(np.float32))
    assert off.terminals.sum() == 0
    np.testing.assert_array_equal(np.unique(on.rewards), [-1.0, 0.0])  # r − 1
    # the Bellman target at the goal: the reward alone with the option, a bootstrap from V(s′) without it
    goal = torch.as_tensor(t.successes)
    next_value = torch.full((len(on),), -50.0)
    with_option = td_target(torch.as_tensor(on.rewards), torch.as_tensor(on.terminals), next_value, 0.99)
    without = td_target(torch.as_tensor(off.rewards), torch.as_tensor(off.terminals), next_value, 0.99)
    assert torch.all(with_option[goal] == 0.0) and torch.allclose(without[goal], torch.tensor(-49.5))
    assert torch.equal(with_option[~goal], without[~goal])
    env = on.make_eval_env()
    try:
        _, info = env.reset(seed=0)
        assert "success" in info and env.spec is not None and env.spec.max_episode_steps == 300
    finally:
        env.close()


def test_stale_staging_folders_of_killed_builds_are_removed(umaze: str) -> None:
    root = recipes.datasets_root()
    stale = root / ".iql-build-killed"
    (stale / "iql").mkdir(parents=True)
    recipes.build(recipes.RECIPES["pointmaze-umaze-mixed"], progress=False)  # already built: only cleans up
    assert not stale.exists()
    assert (root / ".iql-build.lock").exists() and (root / umaze / "data").exists()


def test_a_second_maze_trains_without_code_change(tmp_path: Path) -> None:
    result = launch(
        "experiment=pointmaze",
        "dataset=pointmaze_medium_mixed",
        "network.hidden_dims=[32,32]",
        "train.batch_size=64",
        "train.steps=100",
        "eval.episodes=2",
        "logger=none",
        "hardware.threads=1",
        run_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset_id"] == "iql/pointmaze/medium-mixed-v0"
    assert summary["score_of_record"] == "success_rate"
    assert summary["success_rate"] in (0.0, 50.0, 100.0) and summary["best_success_rate"] >= summary["success_rate"]
    assert (summary["expectile"], summary["beta"]) == (0.9, 10.0)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["eval/success_rate"] == summary["success_rate"]
    final_line = (tmp_path / "launch.log").read_text().splitlines()[-1]
    assert "success rate" in final_line and "max over evaluations" in final_line, final_line

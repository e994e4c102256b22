"""Offline-to-online fine-tuning: the replay buffer, online transitions with the offline semantics, the sampled
policy, the actor's schedule online, config errors, and the real entry point (summary, metrics, resume)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO, launch

from iql.config import AlgorithmConfig, NetworkConfig, OnlineConfig, RunConfig, validate
from iql.data.loading import PreparedData
from iql.data.sampler import DeviceSampler
from iql.data.transforms import ActionScaler, DiscreteActions, ObsNormalizer, RewardTransform
from iql.errors import ConfigError
from iql.learner import IQLLearner
from iql.online import FineTuning, ReplayBuffer
from iql.report.runs import RunRecord, read_run

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "logger=none", "hardware.threads=1"]


def _arrays(n: int, obs_dim: int = 2, act_dim: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n, obs_dim)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=(n, obs_dim)).astype(np.float32),
        np.zeros(n, np.float32),
    )


def test_buffer_samples_like_the_offline_sampler_until_the_first_online_transition() -> None:
    arrays = _arrays(50)
    sampler = DeviceSampler(*arrays, torch.device("cpu"), seed=3)
    buffer = ReplayBuffer(*arrays, torch.device("cpu"), seed=3, capacity=10)
    for _ in range(3):
        a, b = sampler.sample(16), buffer.sample(16)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)
    assert buffer.size == 50


def test_buffer_keeps_the_dataset_and_the_newest_online_transitions_first_in_first_out() -> None:
    arrays = _arrays(20)
    buffer = ReplayBuffer(*arrays, torch.device("cpu"), seed=0, capacity=4)
    for i in range(7):
        buffer.append(np.full(2, 100.0 + i), np.zeros(1), float(i), np.zeros(2), 0.0)
    assert buffer.appended == 7 and buffer.online_size == 4 and buffer.size == 24
    assert sorted(buffer.online_part()["rewards"].tolist()) == [3.0, 4.0, 5.0, 6.0]  # 0, 1, 2 dropped
    np.testing.assert_array_equal(buffer.data.obs[:20].numpy(), arrays[0])  # the dataset is never overwritten
    drawn = torch.cat([buffer.sample(256).rewards for _ in range(20)])
    assert set(drawn[drawn >= 3].tolist()) >= {3.0, 4.0, 5.0, 6.0}  # online transitions are drawn

    restored = ReplayBuffer(*arrays, torch.device("cpu"), seed=0, capacity=4)
    restored.load_state_dict(buffer.state_dict())
    assert restored.appended == 7 and restored.size == 24
    assert torch.equal(restored.data.rewards, buffer.data.rewards)
    assert torch.equal(restored.sample(32).obs, buffer.sample(32).obs)  # the generator too


class CountingEnv(gym.Env):
    """obs = [t, 2t]; reward 2 per step; terminates at step 3 (``terminate``) or runs to a 4-step time limit; reports
    success at step 2 when ``succeed``."""

    def __init__(self, terminate: bool = True, succeed: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.terminate, self.succeed, self.t = terminate, succeed, 0
        self.actions: list[float] = []

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 0.0]), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.actions.append(float(np.asarray(action).reshape(-1)[0]))
        self.t += 1
        info = {"success": self.t == 2} if self.succeed else {}
        return np.array([self.t, 2.0 * self.t]), 2.0, self.terminate and self.t == 3, False, info


def _toy_data(env: gym.Env) -> PreparedData:
    obs, actions, rewards, next_obs, terminals = _arrays(30)
    return PreparedData(
        dataset_id="test/counting-v0",
        obs=obs,
        actions=actions,
        rewards=rewards,
        next_obs=next_obs,
        terminals=terminals,
        action_scaler=ActionScaler(np.array([-2.0]), np.array([2.0])),
        obs_normalizer=ObsNormalizer(np.array([1.0, 1.0], np.float32), np.array([2.0, 4.0], np.float32)),
        reward_transform=RewardTransform("locomotion", scale=10.0),
        make_eval_env=lambda: gym.wrappers.TimeLimit(env, 4),
        ref_min_score=0.0,
        ref_max_score=8.0,
        num_episodes=3,
    )


def _tuning(env: CountingEnv, goal_terminals: bool = False) -> tuple[FineTuning, ReplayBuffer, IQLLearner]:
    data = _toy_data(env)
    arrays = (data.obs, data.actions, data.rewards, data.next_obs, data.terminals)
    buffer = ReplayBuffer(*arrays, torch.device("cpu"), seed=0, capacity=100)
    learner = IQLLearner(2, 1, AlgorithmConfig(), NetworkConfig(hidden_dims=[8]), total_steps=10)
    tuning = FineTuning(OnlineConfig(steps=8), data, buffer, torch.device("cpu"), 0, goal_terminals, True)
    return tuning, buffer, learner


def test_online_transitions_keep_the_offline_semantics() -> None:
    env = CountingEnv(terminate=True)
    tuning, buffer, learner = _tuning(env)
    for _ in range(5):
        assert len(tuning.step(learner, batch_size=8)) == 1  # one update per environment step
    online = buffer.online_part()
    assert online["terminals"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # the termination at step 3, then a reset
    assert online["rewards"].tolist() == [20.0] * 5  # the dataset's reward transform (× 10)
    # observations normalised with the dataset's statistics: (obs − 1) / (2, 4)
    np.testing.assert_allclose(online["obs"][:3].numpy(), [[-0.5, -0.25], [0.0, 0.25], [0.5, 0.75]])
    np.testing.assert_allclose(online["next_obs"][2].numpy(), [1.0, 1.25])
    # actions stored in the learner's [−1, 1], the environment got them in its own units ([−2, 2])
    np.testing.assert_allclose(online["actions"][:, 0].numpy() * 2.0, env.actions, atol=1e-4)
    assert online["actions"].abs().max() <= 1.0
    assert tuning.episodes == 1 and learner.step == 5
    row = tuning.drain()
    assert row["online/episode_return"] == 6.0 and row["online/episode_normalized_score"] == 75.0
    assert row["online/env_steps"] == 5.0 and row["online/buffer_size"] == 35.0


def test_truncation_is_not_terminal_and_goal_success_is_with_goal_terminals() -> None:
    tuning, buffer, learner = _tuning(CountingEnv(terminate=False))
    for _ in range(6):
        tuning.step(learner, batch_size=8)
    assert buffer.online_part()["terminals"].tolist() == [0.0] * 6  # the 4-step time limit truncates: mask stays 1
    assert tuning.episodes == 1

    tuning, buffer, learner = _tuning(CountingEnv(terminate=False, succeed=True), goal_terminals=True)
    for _ in range(4):
        tuning.step(learner, batch_size=8)
    # each episode ends at its success (step 2, as evaluation does) and that step is terminal
    assert buffer.online_part()["terminals"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert tuning.drain()["online/episode_success_rate"] == 100.0


def test_sampled_actions_explore_around_the_mean_within_the_bounds() -> None:
    learner = IQLLearner(3, 2, AlgorithmConfig(), NetworkConfig(hidden_dims=[16]), total_steps=10)
    obs = torch.zeros(4096, 3)
    generator = torch.Generator().manual_seed(0)
    sampled = learner.sample_action(obs, generator)
    assert sampled.abs().max() <= 1.0 and sampled.std(0).min() > 0.3  # log_std starts at 0: std 1, then clipped
    cool = learner.sample_action(obs, generator, temperature=0.01)
    torch.testing.assert_close(cool.mean(0), learner.act(obs[:1])[0], atol=1e-3, rtol=0)

    discrete = IQLLearner(3, 4, AlgorithmConfig(), NetworkConfig(hidden_dims=[16]), total_steps=10, discrete=True)
    one_hot = discrete.sample_action(obs, generator)
    assert torch.equal(one_hot.sum(-1), torch.ones(4096)) and len(one_hot.argmax(-1).unique()) == 4
    assert DiscreteActions(4).to_env(one_hot[:3].numpy()).shape == (3,)


@pytest.mark.parametrize(("schedule", "expected"), [("constant", [1.0, 1.0, 1.0]), ("cosine", [1.0, 0.5, 0.0])])
def test_actor_lr_online_is_constant_or_a_fresh_cosine(schedule: str, expected: list[float]) -> None:
    learner = IQLLearner(
        2,
        1,
        AlgorithmConfig(),
        NetworkConfig(hidden_dims=[8]),
        total_steps=4,
        online_updates=4,
        online_schedule=schedule,
    )
    factor = learner.actor_scheduler.lr_lambdas[0]
    assert factor(2) == pytest.approx(0.5)  # the offline cosine is unchanged
    assert [factor(4), factor(6), factor(8)] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("steps", -1),
        ("updates_per_step", 0),
        ("buffer_capacity", 0),
        ("actor_schedule", "linear"),
        ("temperature", 0.0),
    ],
)
def test_invalid_online_values_name_the_key(key: str, value: Any) -> None:
    cfg = RunConfig(online=OnlineConfig(**{key: value}))
    with pytest.raises(ConfigError, match=f"online.{key}"):
        validate(cfg)


def launch_and_kill_at_row(step: int, args: list[str], run_dir: Path, timeout: float = 300) -> int:
    """Start ``python launch.py`` and SIGKILL it once ``metrics.jsonl`` holds the row of ``step``; its exit code."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics, marker = run_dir / "metrics.jsonl", f'{{"step": {step},'
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and marker in metrics.read_text():
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    return process.wait()


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_finetuning_run_continues_the_step_axis_and_reports_the_switch(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(
        *TINY,
        "online=finetune",
        "train.steps=200",
        "online.steps=300",
        "train.log_every=100",
        "train.eval_every=250",
        "train.checkpoint_every=250",
        run_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 500 and summary["switch_step"] == 200 and summary["online_env_steps"] == 300
    assert summary["online_buffer_size"] == 200 * 200 + 300  # pendulum-mixed: 200 episodes of 200 steps
    assert summary["offline_score"] is not None and summary["normalized_score"] is not None
    assert summary["online_env_steps_per_s"] > 0 and summary["online_updates_per_s"] > 0
    rows = _rows(tmp_path)
    assert [row["step"] for row in rows] == [100, 200, 250, 300, 400, 500]
    assert [row["phase/online"] for row in rows] == [0, 0, 1, 1, 1, 1]  # the switch on W&B's own charts
    switch = rows[1]
    assert switch["eval/normalized_score"] == pytest.approx(summary["offline_score"])
    assert "online/env_steps" not in switch
    assert rows[-1]["online/env_steps"] == 300 and rows[-1]["online/episodes"] == 1  # Pendulum: 200-step episodes
    assert rows[-2]["online/episode_return"] < 0  # the episode that ended at env step 200 (step 400)
    assert "online/episode_return" not in rows[-1]  # no episode ended in the last row's span
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 500 and saved["learner"]["step"] == 500 and saved["sampler"]["online"]["appended"] == 300
    record = read_run(tmp_path)  # the report: the whole axis is the run's length, the switch is marked
    assert isinstance(record, RunRecord) and (record.switch_step, record.target_steps) == (200, 500)


def test_discrete_actions_finetune_with_one_hot_transitions(tmp_path: Path, cartpole_dataset: str) -> None:
    result = launch(
        *TINY, "dataset=cartpole_mixed", "online=finetune", "train.steps=100", "online.steps=200", run_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    online = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["sampler"]["online"]
    assert len(online["actions"]) == 200 and torch.equal(online["actions"].sum(-1), torch.ones(200))
    assert online["terminals"].sum() >= 1  # CartPole terminates when the pole falls
    assert json.loads((tmp_path / "summary.json").read_text())["online_episodes"] >= 1


@pytest.mark.slow
def test_kill_during_the_online_phase_keeps_every_online_transition_once(tmp_path: Path, pendulum_dataset: str) -> None:
    args = [
        *TINY,
        "online=finetune",
        "train.steps=200",
        "online.steps=1500",
        "online.updates_per_step=2",
        "train.log_every=50",
        "train.eval_every=500",
        "train.checkpoint_every=130",
    ]
    run_dir = tmp_path / "run"
    # killed once the row of step 400 is written: after the online checkpoint of step 390, 190 env steps into the
    # second online episode (Pendulum's are 200 steps long), so the episode in flight is cut
    assert launch_and_kill_at_row(400, args, run_dir) == -signal.SIGKILL, "the run ended before it was killed"
    killed = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert killed["step"] > 200, "killed before its first online checkpoint"
    env_steps = killed["online"]["env_steps"]
    assert 0 < env_steps < 1500 and killed["sampler"]["online"]["appended"] == env_steps
    kept = killed["sampler"]["online"]

    result = launch(*args, run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    assert "episode that was in flight starts again" in (run_dir / "launch.log").read_text()
    final = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    online = final["sampler"]["online"]
    assert online["appended"] == 1500 and len(online["rewards"]) == 1500  # every env step's transition, once
    for name in ("obs", "actions", "rewards", "next_obs", "terminals"):  # the killed attempt's, kept as they were
        assert torch.equal(online[name][:env_steps], kept[name]), name
    assert final["step"] == 1700 and final["learner"]["step"] == 200 + 2 * 1500
    steps = [row["step"] for row in _rows(run_dir)]
    assert steps == sorted(set(steps)) and steps == list(range(50, 1701, 50))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["online_env_steps"] == 1500 and summary["resumed_from_steps"]
    assert summary["offline_score"] is not None


@pytest.mark.slow
def test_a_stop_signal_in_the_online_phase_checkpoints_at_that_step_and_resumes(
    tmp_path: Path, pendulum_dataset: str
) -> None:
    # the path SLURM's pre-timeout signal and Ctrl-C take: stop at a step with a checkpoint, then resume to the end
    args = [*TINY, "online=finetune", "train.steps=100", "online.steps=800", "train.log_every=50"]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args, f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and '"step": 300,' in metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    stopped = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert 300 <= stopped["step"] < 900 and f"at step {stopped['step']} of 900" in stderr
    assert stopped["sampler"]["online"]["appended"] == stopped["step"] - 100 == stopped["online"]["env_steps"]
    result = launch(*args, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert final["sampler"]["online"]["appended"] == 800 and len(final["sampler"]["online"]["rewards"]) == 800

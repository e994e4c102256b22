"""Vectorised policy evaluation in the dataset's Gymnasium environment: returns, Minari-normalised scores and,
where the environment reports ``info["success"]`` (goal reaching), success rates.

Goal-reaching episodes end at their first success, as D4RL's AntMaze evaluation environments end an episode at the
goal: the success step is counted (its reward included) and the environment is then left alone. Gymnasium-Robotics
mazes are continuing tasks (``continuing_task=True``: the point or ant may stay at the goal, collecting reward 1 per
step), so without this the return would count steps spent near the goal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from iql.data.transforms import ActionScaler, DiscreteActions, ObsNormalizer


@dataclass
class EvalResult:
    """Returns of ``episodes`` episodes; scores are 100 · (R − ref_min) / (ref_max − ref_min), or None without refs.

    ``successes`` (episodes,) bool: whether each episode reached the goal; None when the environment reports no
    ``success`` in its infos.
    """

    returns: np.ndarray  # (episodes,) undiscounted returns in environment reward units
    lengths: np.ndarray  # (episodes,) steps (an episode that succeeds at step k has length k)
    normalized_scores: np.ndarray | None
    successes: np.ndarray | None = None

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    @property
    def normalized_score(self) -> float | None:
        return None if self.normalized_scores is None else float(self.normalized_scores.mean())

    @property
    def success_rate(self) -> float | None:
        """Percentage of episodes that reached the goal (0–100); None where the env reports no success."""
        return None if self.successes is None else 100.0 * float(self.successes.sum()) / len(self.successes)

    def metrics(self) -> dict[str, float]:
        out = {
            "eval/return_mean": self.return_mean,
            "eval/return_std": float(self.returns.std()),
            "eval/length_mean": float(self.lengths.mean()),
        }
        if self.normalized_scores is not None:
            out["eval/normalized_score"] = float(self.normalized_scores.mean())
            out["eval/normalized_score_std"] = float(self.normalized_scores.std())
        if self.success_rate is not None:
            out["eval/success_rate"] = self.success_rate
        return out


def normalized_score(returns: np.ndarray, ref_min: float | None, ref_max: float | None) -> np.ndarray | None:
    """D4RL-style score in percent: 0 is the random policy's return, 100 the expert's; None without references."""
    if ref_min is None or ref_max is None or ref_max == ref_min:
        return None
    return 100.0 * (returns - ref_min) / (ref_max - ref_min)


def step_successes(infos: dict[str, Any], num_envs: int) -> np.ndarray | None:
    """(num_envs,) bool ``success`` of one vector-env step's infos; None when no env reported one this step."""
    if "success" not in infos:
        return None
    success = np.asarray(infos["success"], dtype=bool).reshape(num_envs)
    reported = infos.get("_success")
    return success & np.asarray(reported, dtype=bool).reshape(num_envs) if reported is not None else success


def with_time_limit(env: gym.Env, max_episode_steps: int | None) -> gym.Env:
    """``env`` truncated after ``max_episode_steps`` steps (``eval.max_episode_steps``); unchanged for None."""
    return gym.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env


def evaluate(
    act: Callable[[torch.Tensor], torch.Tensor],
    make_env: Callable[[], gym.Env],
    episodes: int,
    seed: int,
    device: torch.device,
    action_scaler: ActionScaler | DiscreteActions,
    obs_normalizer: ObsNormalizer,
    ref_min: float | None = None,
    ref_max: float | None = None,
    max_episode_steps: int | None = None,
    end_on_success: bool = True,
) -> EvalResult:
    """Run ``episodes`` episodes at once in a synchronous vector env; each env counts its first episode only.

    ``act`` maps (n, O) float32 observations on ``device`` to (n, A) learner actions ([−1, 1], or one-hot).
    Env i is reset with seed ``seed + i``, so the same seed evaluates on the same initial states. An episode ends at
    termination, truncation, or (with ``end_on_success``) its first ``info["success"]``; an episode counts as a
    success if any of its steps reported one.
    """

    def make() -> gym.Env:
        return with_time_limit(make_env(), max_episode_steps)

    envs = gym.vector.SyncVectorEnv([make] * episodes)
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        running = np.ones(episodes, dtype=bool)
        successes = np.zeros(episodes, dtype=bool)
        reports_success = False
        while running.any():
            obs_tensor = torch.as_tensor(obs_normalizer(np.asarray(obs, dtype=np.float32)), device=device)
            actions = action_scaler.to_env(act(obs_tensor).cpu().numpy())
            obs, rewards, terminated, truncated, infos = envs.step(actions.reshape(envs.action_space.shape))
            returns += np.where(running, rewards, 0.0)
            lengths += running
            succeeded = step_successes(infos, episodes)
            if succeeded is not None:
                reports_success = True
                successes |= running & succeeded
                if end_on_success:
                    running &= ~succeeded
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return EvalResult(
        returns, lengths, normalized_score(returns, ref_min, ref_max), successes if reports_success else None
    )

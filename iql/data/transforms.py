"""Reward transforms, observation normalisation and action rescaling, each a small pure piece."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from iql.data.transitions import Transitions
from iql.errors import DatasetError

ACTION_CLIP = 1.0 - 1e-5  # dataset actions are clipped to ±(1 − 1e-5) after rescaling, as in the official code


@dataclass(frozen=True)
class RewardTransform:
    """r ↦ scale · r + shift, fitted once on the dataset and applied alike to the rewards of online transitions
    (fine-tuning keeps the offline scale: a locomotion transform is not refitted to the new returns)."""

    kind: str = "none"
    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        out = np.asarray(rewards, dtype=np.float32)
        if self.scale != 1.0:
            out = out * self.scale
        if self.shift != 0.0:
            out = out + self.shift
        return out.astype(np.float32, copy=False)


def fit_reward_transform(transitions: Transitions, kind: str) -> RewardTransform:
    """The reward transform ``kind`` with its constants from the dataset.

    none: unchanged. locomotion: r · 1000 / (max − min trajectory return), the paper's MuJoCo normalisation.
    antmaze: r − 1, the paper's AntMaze shift.
    """
    if kind == "none":
        return RewardTransform(kind)
    if kind == "antmaze":
        return RewardTransform(kind, shift=-1.0)
    if kind == "locomotion":
        returns = transitions.episode_returns()
        spread = float(returns.max() - returns.min())
        if not spread > 0.0:
            raise DatasetError(
                "dataset.reward_transform=locomotion needs trajectories with different returns, but all "
                f"{len(returns)} trajectories return {returns[0]:.4g}. Use dataset.reward_transform=none."
            )
        return RewardTransform(kind, scale=1000.0 / spread)
    raise DatasetError(f"Unknown reward transform {kind!r}: use none, locomotion or antmaze.")


def transform_rewards(transitions: Transitions, kind: str) -> np.ndarray:
    """Rewards (N,) float32 after the transform ``kind`` (``fit_reward_transform``)."""
    return fit_reward_transform(transitions, kind)(transitions.rewards)


@dataclass
class ObsNormalizer:
    """obs ↦ (obs − mean) / std with the dataset's statistics; identity when ``mean`` is None."""

    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @classmethod
    def fit(cls, obs: np.ndarray, eps: float = 1e-3) -> ObsNormalizer:
        return cls(obs.mean(axis=0).astype(np.float32), (obs.std(axis=0) + eps).astype(np.float32))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            return obs.astype(np.float32, copy=False)
        return ((obs - self.mean) / self.std).astype(np.float32)


@dataclass
class ActionScaler:
    """Maps environment actions in [low, high] to [−1, 1] and back. Unbounded dimensions pass through."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_space(cls, space: gym.spaces.Box) -> ActionScaler:
        low, high = np.asarray(space.low, np.float64).reshape(-1), np.asarray(space.high, np.float64).reshape(-1)
        bounded = np.isfinite(low) & np.isfinite(high) & (high > low)
        return cls(np.where(bounded, low, -1.0), np.where(bounded, high, 1.0))

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """(N, A) environment actions → (N, A) float32 in [−1 + 1e-5, 1 − 1e-5]."""
        unit = 2.0 * (actions - self.low) / (self.high - self.low) - 1.0
        return np.clip(unit, -ACTION_CLIP, ACTION_CLIP).astype(np.float32)

    def to_env(self, unit_actions: np.ndarray) -> np.ndarray:
        """(N, A) actions in [−1, 1] → environment units, clipped to the bounds."""
        actions = self.low + (np.clip(unit_actions, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)
        return actions.astype(np.float32)


@dataclass
class DiscreteActions:
    """Discrete actions ``start .. start + n − 1``: one-hot (N, n) float32 for the learner, integers for the env.

    The same interface as ``ActionScaler``, so loading and evaluation treat both action kinds alike.
    """

    n: int
    start: int = 0

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        """(N, n) one-hot actions (as ``flatten_array`` reads them) → the same, float32."""
        return np.asarray(actions, dtype=np.float32)

    def to_env(self, one_hot: np.ndarray) -> np.ndarray:
        """(N, n) one-hot (or scores) → (N,) int64 environment actions: the argmax, shifted by ``start``."""
        return (np.asarray(one_hot).argmax(axis=-1) + self.start).astype(np.int64)


def action_codec(space: gym.Space) -> ActionScaler | DiscreteActions:
    """How a dataset's actions (Box or Discrete, see ``check_spaces``) reach the learner and go back to the env."""
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteActions(int(space.n), int(space.start))
    assert isinstance(space, gym.spaces.Box), space
    return ActionScaler.from_space(space)

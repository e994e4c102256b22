"""Offline-to-online fine-tuning (paper §5.3): the replay buffer that starts as the dataset, and the environment
stepping that fills it.

    buffer = ReplayBuffer(obs, actions, rewards, next_obs, terminals, device, seed=0, capacity=10_000)
    tuning = FineTuning(cfg.online, data, buffer, device, seed=0, ...)
    metrics = tuning.step(learner, batch_size)   # one env step, its transition appended, updates_per_step updates

Online transitions keep the offline semantics: the Bellman terminal is the env's *termination* (never a truncation),
or with ``goal_terminals`` a step that reports ``info["success"]``; rewards go through the dataset's fitted reward
transform (a locomotion scale is not refitted); observations are normalised with the dataset's statistics; actions
are stored as the learner sees them ([−1, 1], or one-hot). The buffer's state (the online part, not the dataset,
which is reloaded) and the environment step count go into checkpoints; the environment's own state does not: after
a resume, the episode that was in flight starts again from a reset.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from iql.config import OnlineConfig
from iql.data.loading import PreparedData
from iql.data.sampler import DeviceSampler
from iql.data.transforms import ACTION_CLIP
from iql.evaluation import normalized_score, with_time_limit
from iql.update import Batch

FIELDS = tuple(field.name for field in dataclasses.fields(Batch))  # obs, actions, rewards, next_obs, terminals


class ReplayBuffer(DeviceSampler):
    """The dataset's N transitions followed by room for ``capacity`` online ones, all on the device.

    Batches are drawn uniformly over the dataset and the online transitions held (with replacement, the
    ``DeviceSampler`` generator: before the first online step the batches are exactly the offline sampler's). Once
    ``capacity`` online transitions are held, each new one replaces the oldest online one (FIFO); dataset
    transitions are never dropped.
    """

    def __init__(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminals: np.ndarray,
        device: torch.device,
        seed: int,
        capacity: int,
    ) -> None:
        super().__init__(obs, actions, rewards, next_obs, terminals, device, seed)
        self.dataset_size = self.size
        self.capacity = capacity
        self.appended = 0  # online transitions ever appended (= environment steps taken)
        self.data = Batch(*(self._grown(getattr(self.data, name)) for name in FIELDS))

    def _grown(self, tensor: Tensor) -> Tensor:
        return torch.cat([tensor, tensor.new_zeros((self.capacity, *tensor.shape[1:]))])

    @property
    def online_size(self) -> int:
        """Online transitions held now: min(appended, capacity)."""
        return min(self.appended, self.capacity)

    def append(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: float) -> None:
        """Add one transition: obs, next_obs (O,) normalised; action (A,) in [−1, 1] or one-hot; reward transformed;
        terminal 1.0 for the Bellman mask."""
        row = self.dataset_size + self.appended % self.capacity
        values = (obs, action, np.float32(reward), next_obs, np.float32(terminal))
        for name, value in zip(FIELDS, values, strict=True):
            getattr(self.data, name)[row] = torch.as_tensor(value, dtype=torch.float32)
        self.appended += 1
        self.size = self.dataset_size + self.online_size

    def online_part(self) -> dict[str, Tensor]:
        """The online transitions held, by field, in buffer order (rows N .. N + online_size), on the CPU."""
        end = self.dataset_size + self.online_size
        return {name: getattr(self.data, name)[self.dataset_size : end].cpu().clone() for name in FIELDS}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "online": {"appended": self.appended, **self.online_part()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        online = state.get("online")
        if online is None:  # a checkpoint of the offline phase (or of a sampler without an online part)
            return
        held = len(online["rewards"])
        if held > self.capacity:
            raise ValueError(f"the checkpoint holds {held} online transitions, more than the capacity {self.capacity}")
        for name in FIELDS:
            getattr(self.data, name)[self.dataset_size : self.dataset_size + held] = online[name].to(self.device)
        self.appended = int(online["appended"])
        self.size = self.dataset_size + self.online_size


class Actor(Protocol):
    step: int

    def sample_action(
        self, obs: Tensor, generator: torch.Generator, temperature: float = 1.0, exploration_noise: float = 0.1
    ) -> Tensor: ...

    def update(self, batch: Batch) -> dict[str, Tensor]: ...


def episode_seed(seed: int, env_steps: int) -> int:
    """Reset seed of the online episode that starts after ``env_steps`` steps (apart from evaluation's seeds)."""
    return (seed * 2_000_003 + 1_000_000_007 + env_steps) % (2**31)


class FineTuning:
    """The online phase: one environment (the dataset's evaluation environment), stepped by the learner's sampled
    action; every transition goes into ``buffer``; each step is followed by ``updates_per_step`` updates."""

    def __init__(
        self,
        cfg: OnlineConfig,
        data: PreparedData,
        buffer: ReplayBuffer,
        device: torch.device,
        seed: int,
        goal_terminals: bool,
        end_on_success: bool,
        max_episode_steps: int | None = None,
    ) -> None:
        self.cfg, self.data, self.buffer, self.device, self.seed = cfg, data, buffer, device, seed
        self.goal_terminals, self.end_on_success = goal_terminals, end_on_success
        self.env = with_time_limit(data.make_eval_env(), max_episode_steps)
        self.generator = torch.Generator(device=device)  # the sampled actions' noise
        self.generator.manual_seed(seed + 7919)
        self.obs: np.ndarray | None = None  # the current observation (raw); None: reset before the next step
        self.episode_return, self.episode_length, self.episode_success = 0.0, 0, False
        self.episodes = 0  # finished online episodes
        self.reports_success = False  # whether the env reports info["success"] (goal reaching)
        self.finished: list[tuple[float, int, bool]] = []  # (return, length, success) since the last ``drain``
        self.env_time = self.update_time = 0.0  # seconds spent stepping the env (with acting) and updating
        self.env_steps_timed = self.updates_timed = 0

    @property
    def env_steps(self) -> int:
        return self.buffer.appended

    def step(self, learner: Actor, batch_size: int) -> list[dict[str, Tensor]]:
        """One environment step with the sampled action, its transition appended; then the updates. Returns each
        update's metrics."""
        tick = time.perf_counter()
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=episode_seed(self.seed, self.env_steps))
        normalize = self.data.obs_normalizer
        obs = normalize(np.asarray(self.obs, dtype=np.float32).reshape(1, -1))
        action = learner.sample_action(
            torch.as_tensor(obs, device=self.device), self.generator, self.cfg.temperature, self.cfg.exploration_noise
        )
        unit = action.cpu().numpy()
        env_action = self.data.action_scaler.to_env(unit)[0]
        next_obs, reward, terminated, truncated, info = self.env.step(env_action)
        success = bool(info.get("success", False))
        self.reports_success |= "success" in info
        terminal = bool(terminated) or (self.goal_terminals and success)
        stored = unit[0] if self.data.discrete else np.clip(unit[0], -ACTION_CLIP, ACTION_CLIP)
        self.buffer.append(
            obs[0],
            stored,
            float(self.data.reward_transform(np.asarray([reward], dtype=np.float32))[0]),
            normalize(np.asarray(next_obs, dtype=np.float32).reshape(1, -1))[0],
            float(terminal),
        )
        self.episode_return += float(reward)
        self.episode_length += 1
        self.episode_success |= success
        if terminated or truncated or (self.end_on_success and success):
            self.finished.append((self.episode_return, self.episode_length, self.episode_success))
            self.episodes += 1
            self.obs, self.episode_return, self.episode_length, self.episode_success = None, 0.0, 0, False
        else:
            self.obs = next_obs
        tock = time.perf_counter()
        metrics = [learner.update(self.buffer.sample(batch_size)) for _ in range(self.cfg.updates_per_step)]
        self.env_time += tock - tick
        self.update_time += time.perf_counter() - tock
        self.env_steps_timed += 1
        self.updates_timed += self.cfg.updates_per_step
        return metrics

    def rates(self) -> dict[str, float | None]:
        """Environment steps per second (acting included) and updates per second, over this attempt's online steps."""
        return {
            "env_steps_per_s": self.env_steps_timed / self.env_time if self.env_time > 0 else None,
            "updates_per_s": self.updates_timed / self.update_time if self.update_time > 0 else None,
        }

    def drain(self) -> dict[str, float]:
        """``online/*`` metrics for a log row: the episodes finished since the last row (if any), counts, rates."""
        row: dict[str, float] = {
            "online/env_steps": float(self.env_steps),
            "online/episodes": float(self.episodes),
            "online/buffer_size": float(self.buffer.size),
        }
        row.update({f"online/{key}": value for key, value in self.rates().items() if value is not None})
        if self.finished:
            returns = np.array([episode[0] for episode in self.finished])
            row["online/episode_return"] = float(returns.mean())
            row["online/episode_length"] = float(np.mean([episode[1] for episode in self.finished]))
            scores = normalized_score(returns, self.data.ref_min_score, self.data.ref_max_score)
            if scores is not None:
                row["online/episode_normalized_score"] = float(scores.mean())
            if self.reports_success:
                row["online/episode_success_rate"] = 100.0 * float(np.mean([episode[2] for episode in self.finished]))
            self.finished = []
        return row

    def state_dict(self) -> dict[str, Any]:
        """Everything but the environment (whose episode restarts on resume) and the buffer (saved on its own)."""
        return {
            "generator": self.generator.get_state(),
            "episodes": self.episodes,
            "finished": list(self.finished),
            "env_steps": self.env_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.episodes = int(state["episodes"])
        self.finished = [tuple(episode) for episode in state["finished"]]  # type: ignore[misc]
        if int(state["env_steps"]) != self.env_steps:
            raise ValueError(
                f"the checkpoint's online phase took {state['env_steps']} env steps but its buffer holds "
                f"{self.env_steps} appended transitions"
            )

    def close(self) -> None:
        self.env.close()

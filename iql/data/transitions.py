"""Minari episodes → one flat table of transitions (numpy, float32), built once at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from iql.errors import DatasetError


@dataclass
class Transitions:
    """N transitions of a dataset, in environment units (actions not yet rescaled, rewards not transformed).

    obs, next_obs (N, O) float32; actions (N, A) float32, one-hot (N, n) for discrete actions; rewards (N,) float32;
    terminals (N,) float32, 1.0 where the episode terminated (the Bellman mask uses these only);
    episode_ends (N,) bool, True on the last transition of every episode (termination, truncation or end of
    recording): used only to split returns for reward normalisation;
    successes (N,) bool or None, True where the step reached the goal by the dataset's ``infos/success`` (None when
    the dataset records no success).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    episode_ends: np.ndarray
    successes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rewards)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every trajectory, (num_episodes,) float64."""
        ends = np.flatnonzero(self.episode_ends)
        starts = np.concatenate([[0], ends[:-1] + 1])
        sums = np.add.reduceat(self.rewards.astype(np.float64), starts) if len(starts) else np.zeros(0)
        return sums


def reached_goal(transitions: Transitions) -> np.ndarray:
    """(N,) bool: the transitions whose next state reached the goal.

    From the dataset's ``infos/success`` where it records it (Minari's maze datasets, the local PointMaze recipes),
    else from a positive reward (sparse goal rewards: 1 at the goal, 0 elsewhere).
    """
    if transitions.successes is not None:
        return transitions.successes.astype(bool)
    return transitions.rewards > 0


def bellman_terminals(transitions: Transitions, goal_terminals: bool) -> np.ndarray:
    """(N,) float32 terminal flags for the Bellman target ``r + γ · (1 − terminal) · V(s′)``.

    The dataset's terminations; with ``goal_terminals``, also every transition that reaches the goal (the official
    IQL code's masks on D4RL AntMaze, whose ``terminals`` mark the goal steps). The episode boundaries
    (``episode_ends``) are not changed: only the mask is.
    """
    if not goal_terminals:
        return transitions.terminals
    return np.maximum(transitions.terminals, reached_goal(transitions).astype(np.float32))


def flatten_array(space: gym.Space, value: Any, length: int) -> np.ndarray:
    """A batch of ``length`` values of ``space`` (Box, Dict, Tuple or Discrete) → (length, flat_dim) float32.

    Matches ``gymnasium.spaces.flatten`` element by element, so ``FlattenObservation`` at evaluation sees the
    same layout.
    """
    if isinstance(space, gym.spaces.Box):
        return np.asarray(value, dtype=np.float32).reshape(length, -1)
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([flatten_array(sub, value[key], length) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([flatten_array(sub, value[i], length) for i, sub in enumerate(space.spaces)], axis=1)
    if isinstance(space, gym.spaces.Discrete):
        one_hot = np.zeros((length, int(space.n)), dtype=np.float32)
        one_hot[np.arange(length), np.asarray(value, dtype=np.int64).reshape(-1) - int(space.start)] = 1.0
        return one_hot
    raise DatasetError(f"The space {space} cannot be flattened into a vector (see check_spaces).")


def _unflattenable(space: gym.Space, path: str) -> Iterator[tuple[str, gym.Space]]:
    """(path, leaf space) of every leaf of ``space`` that ``flatten_array`` cannot encode."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _unflattenable(sub, f"{path}[{key!r}]")
    elif isinstance(space, gym.spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            yield from _unflattenable(sub, f"{path}[{index}]")
    elif not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete)):
        yield path, space


def check_spaces(observation_space: gym.Space, action_space: gym.Space, dataset_id: str) -> None:
    """Raise ``DatasetError`` unless observations flatten to a vector and actions are Box or Discrete."""
    if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise DatasetError(
            f"Dataset {dataset_id} has action space {action_space}; IQL here trains on continuous (Box) or discrete "
            "(Discrete) actions. Pick a dataset with one of those action spaces."
        )
    bad = list(_unflattenable(observation_space, "observation"))
    if bad:
        text = any(isinstance(space, gym.spaces.Text) for _, space in bad)
        raise DatasetError(
            f"Dataset {dataset_id} has observations that cannot be flattened into a vector: "
            + ", ".join(f"{path} is {space}" for path, space in bad)
            + ". IQL here needs observations made of Box, Discrete, Dict and Tuple spaces."
            + (
                " Text (MiniGrid's and BabyAI's mission string, say) has no fixed numeric encoding here: pick a "
                "dataset without text observations."
                if text
                else ""
            )
        )


HDF5_FILE = "main_data.hdf5"  # the one file in which Minari's hdf5 storage keeps every episode
EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
SUCCESS_KEY = "infos/success"  # per-step success flags (T+1, the reset's first) where a dataset records them


def read_hdf5_episodes(path: Path, indices: Iterable[int]) -> Iterator[dict[str, Any]]:
    """The arrays of each episode of ``indices`` straight from a Minari hdf5 file, in one open; of the infos only
    ``success`` is read (as ``{"infos": {"success": ...}}``), where recorded.

    Uses h5py's low-level dataset API: its per-object overhead, not the bytes, dominates for ~1000-step episodes.
    """
    import h5py

    def read(file: h5py.File, name: str) -> np.ndarray:
        dataset = h5py.h5d.open(file.id, name.encode())
        array = np.empty(dataset.shape, dataset.dtype)
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, array)
        return array

    with h5py.File(path, "r") as file:
        for index in indices:
            episode: dict[str, Any] = {key: read(file, f"episode_{index}/{key}") for key in EPISODE_KEYS}
            if f"episode_{index}/{SUCCESS_KEY}" in file:
                episode["infos"] = {"success": read(file, f"episode_{index}/{SUCCESS_KEY}")}
            yield episode


def _fast_episodes(dataset: Any) -> Iterator[dict[str, Any]] | None:
    """Episodes via ``read_hdf5_episodes`` when the dataset is hdf5 with vector observations; else None."""
    path = Path(dataset.storage.data_path) / HDF5_FILE
    vector_obs = isinstance(dataset.observation_space, gym.spaces.Box) and len(dataset.observation_space.shape) == 1
    if not (vector_obs and path.is_file()):
        return None
    return read_hdf5_episodes(path, dataset.episode_indices)


def flatten_episodes(dataset: Any, fast: bool = True) -> Transitions:
    """Read every episode of a ``minari.MinariDataset`` once and stack them into ``Transitions``.

    Each Minari episode holds T+1 observations and T actions: obs = observations[:-1], next_obs = observations[1:].
    With ``fast``, an hdf5 dataset with vector observations is read straight from its file (no per-step infos
    decoded); any other storage goes through ``storage.get_episodes``. Both give the same arrays.
    """
    check_spaces(dataset.observation_space, dataset.action_space, dataset.spec.dataset_id)
    obs_space = dataset.observation_space
    keys = ("obs", "next_obs", "actions", "rewards", "term", "ends", "success")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    success_recorded = True
    episodes = _fast_episodes(dataset) if fast else None
    if episodes is None:
        episodes = dataset.storage.get_episodes(dataset.episode_indices)
    for episode in episodes:
        steps = len(episode["rewards"])
        if steps == 0:
            continue
        observations = flatten_array(obs_space, episode["observations"], steps + 1)
        parts["obs"].append(observations[:-1])
        parts["next_obs"].append(observations[1:])
        parts["actions"].append(flatten_array(dataset.action_space, episode["actions"], steps))  # Discrete: one-hot
        parts["rewards"].append(np.asarray(episode["rewards"], dtype=np.float32).reshape(steps))
        parts["term"].append(np.asarray(episode["terminations"], dtype=np.float32).reshape(steps))
        ends = np.zeros(steps, dtype=bool)
        ends[-1] = True
        parts["ends"].append(ends | np.asarray(episode["truncations"], dtype=bool).reshape(steps))
        infos = episode.get("infos")
        success = infos.get("success") if isinstance(infos, dict) else None
        if success is not None and len(success) == steps + 1:
            parts["success"].append(np.asarray(success, dtype=bool).reshape(steps + 1)[1:])
        else:
            success_recorded = False
    if not parts["rewards"]:
        raise DatasetError(
            f"Dataset {dataset.spec.dataset_id} holds no transitions. Rebuild or re-download it, or choose another "
            "dataset.id."
        )
    transitions = Transitions(
        obs=np.concatenate(parts["obs"]),
        actions=np.concatenate(parts["actions"]),
        rewards=np.concatenate(parts["rewards"]),
        next_obs=np.concatenate(parts["next_obs"]),
        terminals=np.concatenate(parts["term"]),
        episode_ends=np.concatenate(parts["ends"]) | np.concatenate(parts["term"]).astype(bool),
        successes=np.concatenate(parts["success"]) if success_recorded else None,
    )
    check_finite(transitions, dataset.spec.dataset_id)
    return transitions


def check_finite(transitions: Transitions, dataset_id: str) -> None:
    """Raise ``DatasetError`` naming the field and the first bad row if any value is NaN or infinite."""
    for name in ("obs", "actions", "rewards", "next_obs", "terminals"):
        values = getattr(transitions, name)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
            raise DatasetError(
                f"Dataset {dataset_id} has {int(bad.sum())} non-finite value(s) in '{name}' (first at transition "
                f"{row}). Rebuild the dataset or filter those episodes before training."
            )

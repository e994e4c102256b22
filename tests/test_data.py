"""Minari datasets → transitions: layout, masks, transforms, local recipes and clear errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from iql.config import DatasetConfig
from iql.data import flatten_episodes, open_dataset, prepare, recipes
from iql.data.transforms import ActionScaler, transform_rewards
from iql.data.transitions import Transitions, flatten_array
from iql.errors import DatasetError


@pytest.fixture(scope="module")
def inverted_pendulum(minari_root: object) -> str:
    recipe = recipes.RECIPES["inverted-pendulum-mixed"]
    recipes.build(recipe, progress=False)
    return recipe.dataset_id


def test_flatten_keeps_episode_layout(pendulum_dataset: str) -> None:
    dataset = open_dataset(DatasetConfig(id=pendulum_dataset))
    t = flatten_episodes(dataset)
    assert len(t) == dataset.total_steps == 200 * 200
    assert t.obs.dtype == np.float32 and t.obs.shape == (len(t), 3)
    inside = ~t.episode_ends[:-1]
    np.testing.assert_array_equal(t.next_obs[:-1][inside], t.obs[1:][inside])  # next_obs = obs[1:] in an episode
    assert t.episode_ends.sum() == 200
    assert t.terminals.sum() == 0  # Pendulum only truncates: nothing may cut the bootstrap


def test_terminations_not_truncations_make_terminals(inverted_pendulum: str) -> None:
    dataset = open_dataset(DatasetConfig(id=inverted_pendulum))
    terminated = truncated = 0
    for episode in dataset.iterate_episodes():
        terminated += int(episode.terminations.any())
        truncated += int(episode.truncations.any())
    assert terminated > 0 and truncated > 0  # the recipe has both kinds of episode end
    t = flatten_episodes(dataset)
    assert t.terminals.sum() == terminated
    assert t.episode_ends.sum() == terminated + truncated


def test_hdf5_fast_reader_gives_the_generic_readers_arrays(
    inverted_pendulum: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = open_dataset(DatasetConfig(id=inverted_pendulum))
    subset = dataset.filter_episodes(lambda episode: episode.id % 3 != 1)  # episode_indices with gaps
    generic = [flatten_episodes(d, fast=False) for d in (dataset, subset)]

    def unused(*args: object) -> None:
        raise AssertionError("the fast path went through storage.get_episodes")

    for d in (dataset, subset):
        monkeypatch.setattr(d.storage, "get_episodes", unused)
    fast = [flatten_episodes(d) for d in (dataset, subset)]
    assert len(fast[1]) < len(fast[0])
    for f, g in zip(fast, generic, strict=True):
        for name in ("obs", "actions", "rewards", "next_obs", "terminals", "episode_ends"):
            np.testing.assert_array_equal(getattr(f, name), getattr(g, name))
            assert getattr(f, name).dtype == getattr(g, name).dtype


def test_actions_rescaled_to_unit_range_and_back(pendulum_dataset: str) -> None:
    data = prepare(DatasetConfig(id=pendulum_dataset))
    raw = flatten_episodes(open_dataset(DatasetConfig(id=pendulum_dataset))).actions
    assert np.abs(raw).max() > 1.5  # Pendulum's torque is ±2
    assert np.abs(data.actions).max() <= 1.0 - 1e-5
    np.testing.assert_allclose(data.action_scaler.to_env(data.actions), raw, atol=1e-4)


def test_unbounded_action_dimensions_pass_through() -> None:
    scaler = ActionScaler.from_space(gym.spaces.Box(-np.inf, np.inf, (2,)))
    np.testing.assert_allclose(scaler.to_env(np.array([[0.5, -0.5]])), [[0.5, -0.5]])


def _toy(rewards: list[float], ends: list[bool]) -> Transitions:
    n = len(rewards)
    return Transitions(
        np.zeros((n, 1), np.float32),
        np.zeros((n, 1), np.float32),
        np.array(rewards, np.float32),
        np.zeros((n, 1), np.float32),
        np.zeros(n, np.float32),
        np.array(ends),
    )


def test_reward_transforms() -> None:
    t = _toy([1.0, 1.0, 3.0, 2.0], [False, True, False, True])  # returns 2 and 5
    np.testing.assert_allclose(transform_rewards(t, "none"), t.rewards)
    np.testing.assert_allclose(transform_rewards(t, "antmaze"), t.rewards - 1)
    np.testing.assert_allclose(transform_rewards(t, "locomotion"), t.rewards * 1000 / 3, rtol=1e-6)
    with pytest.raises(DatasetError, match="reward_transform=none"):
        transform_rewards(_toy([1.0, 1.0], [True, True]), "locomotion")


def test_dict_observations_flatten_like_gymnasium() -> None:
    space = gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,)), "a": gym.spaces.Box(-1, 1, (3,))})
    samples = [space.sample() for _ in range(4)]
    batch = {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    expected = np.stack([gym.spaces.flatten(space, s) for s in samples])
    np.testing.assert_allclose(flatten_array(space, batch, 4), expected)


def test_missing_dataset_says_how_to_get_it(pendulum_dataset: str) -> None:
    with pytest.raises(DatasetError) as error:
        open_dataset(DatasetConfig(id="nowhere/missing-v0"))
    message = str(error.value)
    assert "nowhere/missing-v0" in message and pendulum_dataset in message
    assert "python -m iql.data build" in message and "dataset.download=true" in message


def test_non_finite_dataset_is_rejected(broken_datasets: dict[str, str]) -> None:
    with pytest.raises(DatasetError, match="non-finite value.*'obs'.*transition 2"):
        prepare(DatasetConfig(id=broken_datasets["nan"]))


def test_build_is_idempotent_and_leaves_no_staging(pendulum_dataset: str, minari_root: object) -> None:
    root = recipes.datasets_root()
    before = (root / pendulum_dataset / "data" / "main_data.hdf5").stat().st_mtime_ns
    recipes.build(recipes.RECIPES["pendulum-mixed"], progress=False)
    assert (root / pendulum_dataset / "data" / "main_data.hdf5").stat().st_mtime_ns == before
    assert not list(root.glob(".iql-build-*"))
    dataset = open_dataset(DatasetConfig(id=pendulum_dataset))
    assert dataset.storage.metadata["ref_min_score"] < dataset.storage.metadata["ref_max_score"]

"""Open a Minari dataset by id (local, built from a recipe, or downloaded) and prepare it for training."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from iql.config import DatasetConfig
from iql.data import recipes
from iql.data.transforms import (
    ActionScaler,
    DiscreteActions,
    ObsNormalizer,
    RewardTransform,
    action_codec,
    fit_reward_transform,
)
from iql.data.transitions import Transitions, bellman_terminals, flatten_episodes
from iql.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """A dataset ready for the learner, and what evaluation needs to act in its environment.

    obs, next_obs (N, O) normalised float32; actions (N, A) in [−1, 1], or one-hot (N, n) for discrete actions;
    rewards (N,) transformed; terminals (N,).
    """

    dataset_id: str
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    action_scaler: ActionScaler | DiscreteActions  # learner actions ↔ environment actions
    obs_normalizer: ObsNormalizer
    reward_transform: RewardTransform  # dataset rewards → training rewards; online rewards get the same
    make_eval_env: Callable[[], gym.Env]
    ref_min_score: float | None
    ref_max_score: float | None
    num_episodes: int

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_scaler, DiscreteActions)

    def __len__(self) -> int:
        return len(self.rewards)


def _local_ids() -> list[str]:
    import minari

    try:
        return sorted(minari.list_local_datasets())
    except Exception:  # a corrupt folder elsewhere in the root must not hide the real error
        return []


def open_dataset(cfg: DatasetConfig) -> Any:
    """The ``minari.MinariDataset`` for ``cfg.id``: local, else built from its recipe, else downloaded if allowed."""
    import minari

    if not recipes.dataset_exists(cfg.id):
        recipe = recipes.RECIPES.get(cfg.recipe) if cfg.recipe else recipes.recipe_for(cfg.id)
        if cfg.recipe and recipe is None:
            raise DatasetError(
                f"dataset.recipe={cfg.recipe!r} is not a known recipe. Known: {', '.join(recipes.RECIPES)} "
                "(python -m iql.data list)."
            )
        if recipe is not None and recipe.dataset_id == cfg.id:
            log.info("dataset %s is missing: building it from recipe %s", cfg.id, recipe.name)
            recipes.build(recipe)
        elif cfg.download:
            try:
                return minari.load_dataset(cfg.id, download=True)
            except Exception as error:
                raise DatasetError(
                    f"Could not download Minari dataset {cfg.id!r}: {error}. Downloading needs network access and "
                    "`pip install 'minari[hf]'`; on an offline machine copy the dataset folder into "
                    f"{recipes.datasets_root()} instead."
                ) from error
        else:
            local = _local_ids()
            raise DatasetError(
                f"Minari dataset {cfg.id!r} is not in {recipes.datasets_root()} (MINARI_DATASETS_PATH). "
                f"Local datasets: {', '.join(local) if local else 'none'}. Build a local one with "
                f"`python -m iql.data build <recipe>` (recipes: {', '.join(recipes.RECIPES)}), or download this one "
                "with dataset.download=true (needs network and minari[hf])."
            )
    try:
        return minari.load_dataset(cfg.id)
    except Exception as error:
        raise DatasetError(
            f"Minari dataset {cfg.id!r} in {recipes.datasets_root()} could not be read ({type(error).__name__}: "
            f"{error}). Delete its folder and rebuild or re-download it."
        ) from error


def _eval_env_factory(dataset: Any, cfg: DatasetConfig) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(cfg.eval_env) if cfg.eval_env else dataset.recover_environment(eval_env=True)
        if not isinstance(env.observation_space, gym.spaces.Box):
            env = gym.wrappers.FlattenObservation(env)
        return env

    return make


def _check_env_matches(env: gym.Env, dataset: Any, obs_dim: int, cfg: DatasetConfig) -> None:
    name = cfg.eval_env or "the dataset's eval environment"
    space = env.action_space
    data_space = dataset.action_space
    if type(space) is not type(data_space) or space.shape != data_space.shape:
        raise DatasetError(
            f"The action space of {name} ({space}) does not match dataset {cfg.id}'s ({data_space}). Set "
            "dataset.eval_env to the environment the dataset was recorded in."
        )
    if (
        isinstance(space, gym.spaces.Discrete)
        and isinstance(data_space, gym.spaces.Discrete)
        and (space.n, space.start) != (data_space.n, data_space.start)
    ):
        raise DatasetError(
            f"{name} has {space.n} actions from {space.start} but dataset {cfg.id} has {data_space.n} from "
            f"{data_space.start}. Set dataset.eval_env to the environment the dataset was recorded in."
        )
    if (
        isinstance(space, gym.spaces.Box)
        and isinstance(data_space, gym.spaces.Box)
        and not (np.allclose(space.low, data_space.low) and np.allclose(space.high, data_space.high))
    ):
        raise DatasetError(
            f"The action bounds of {name} [{space.low}, {space.high}] differ from dataset {cfg.id}'s "
            f"[{data_space.low}, {data_space.high}]. Set dataset.eval_env to the matching environment."
        )
    env_obs_dim = int(np.prod(env.observation_space.shape or (0,)))
    if env_obs_dim != obs_dim:
        raise DatasetError(
            f"{name} observes {env_obs_dim} values but dataset {cfg.id} holds {obs_dim} per step. Set "
            "dataset.eval_env to the environment the dataset was recorded in."
        )


def prepare(cfg: DatasetConfig) -> PreparedData:
    """Open, flatten and transform the dataset ``cfg.id``; check that its eval environment can be built."""
    dataset = open_dataset(cfg)
    try:
        transitions: Transitions = flatten_episodes(dataset)
    except (OSError, KeyError, ValueError) as error:  # h5py's errors on a truncated or corrupt data file
        raise DatasetError(
            f"The episodes of Minari dataset {cfg.id!r} in {recipes.datasets_root()} could not be read "
            f"({type(error).__name__}: {error}). The data file is damaged: delete the dataset's folder and rebuild "
            "(python -m iql.data build <recipe>) or re-download it."
        ) from error
    scaler = action_codec(dataset.action_space)
    normalizer = ObsNormalizer.fit(transitions.obs) if cfg.normalize_obs else ObsNormalizer()
    make_env = _eval_env_factory(dataset, cfg)
    try:
        env = make_env()
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(
            f"Could not create the evaluation environment of dataset {cfg.id} "
            f"({cfg.eval_env or 'from the dataset metadata'}): {type(error).__name__}: {error}. Install the package "
            "that registers it (PointMaze and D4RL AntMaze, Kitchen and Adroit need `pip install -e '.[robotics]'`), "
            "or set dataset.eval_env=<Gymnasium id>."
        ) from error
    try:
        _check_env_matches(env, dataset, transitions.obs.shape[1], cfg)
    finally:
        env.close()
    metadata = dataset.storage.metadata
    reward_transform = fit_reward_transform(transitions, cfg.reward_transform)
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    return PreparedData(
        dataset_id=cfg.id,
        obs=normalizer(transitions.obs),
        actions=scaler.to_unit(transitions.actions),
        rewards=reward_transform(transitions.rewards),
        next_obs=normalizer(transitions.next_obs),
        terminals=bellman_terminals(transitions, cfg.goal_terminals),
        action_scaler=scaler,
        obs_normalizer=normalizer,
        reward_transform=reward_transform,
        make_eval_env=make_env,
        ref_min_score=None if ref_min is None else float(ref_min),
        ref_max_score=None if ref_max is None else float(ref_max),
        num_episodes=int(transitions.episode_ends.sum()),
    )

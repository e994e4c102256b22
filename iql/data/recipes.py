"""Build real Minari datasets locally from behaviour policies, for machines with no network and for tests.

A *recipe* names an environment, a mix of behaviour policies (each with a noise level and an episode count) and
the policies that define the reference scores (random → ``ref_min_score``, the noiseless controller →
``ref_max_score``). The dataset is written with hdf5 into a temporary root and moved into
``$MINARI_DATASETS_PATH`` with one ``rename``, under a file lock, so parallel jobs and a kill at any moment never
leave a half-written dataset (a killed build's staging folder is removed by the next build).

Goal-reaching recipes on Gymnasium-Robotics PointMaze (``MazeRecipe``, ``iql/data/maze.py``) are built the same way.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from iql.data import maze
from iql.data.maze import MEDIUM_MAP, UMAZE_MAP, MazeMix, MazeRecipe
from iql.errors import DatasetError

log = logging.getLogger(__name__)

# (obs (O,), rng) -> action in env units: (A,) for a Box action space, an int for a Discrete one
Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray | int]


def pendulum_controller(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Energy-pumping swing-up, PD balance near the top, for ``Pendulum-v1`` (obs cos θ, sin θ, θ̇; torque ±2)."""
    cos_theta, sin_theta, velocity = obs
    theta = np.arctan2(sin_theta, cos_theta)
    if cos_theta > 0.85:
        torque = -(10.0 * theta + 2.0 * velocity)
    else:
        energy = 0.5 * velocity**2 + 15.0 * cos_theta  # 15 = 3g/2l; upright at rest has energy 15
        torque = 0.6 * (15.0 - energy) * np.sign(velocity + 1e-6)
    return np.clip(np.array([torque]), -2.0, 2.0)


def inverted_pendulum_controller(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear state feedback that balances ``InvertedPendulum-v5`` (obs x, θ, ẋ, θ̇; force ±3)."""
    x, theta, x_velocity, theta_velocity = obs
    return np.clip(np.array([x + 10.0 * theta + x_velocity + theta_velocity]), -3.0, 3.0)


def cartpole_controller(obs: np.ndarray, rng: np.random.Generator) -> int:
    """Push towards the falling side, damped by the pole's and the cart's velocities: ``CartPole-v1`` (obs x, ẋ,
    θ, θ̇; actions 0 = left, 1 = right). Balances for the whole 500 steps."""
    x, x_velocity, theta, theta_velocity = obs
    return int(theta + 0.5 * theta_velocity + 0.05 * x + 0.2 * x_velocity > 0)


def cartpole_wrong_controller(obs: np.ndarray, rng: np.random.Generator) -> int:
    """``cartpole_controller`` with its sign flipped: pushes the pole over in ~9 steps."""
    return 1 - cartpole_controller(obs, rng)


def acrobot_controller(obs: np.ndarray, rng: np.random.Generator) -> int:
    """Pump energy by torquing the second joint with its own velocity: ``Acrobot-v1`` (obs cos/sin of both joint
    angles, both angular velocities; actions 0, 1, 2 = torque −1, 0, +1). Reaches the line in ~80 steps."""
    return 2 if obs[5] > 0 else 0


CONTROLLERS: dict[str, Policy] = {
    "pendulum_controller": pendulum_controller,
    "inverted_pendulum_controller": inverted_pendulum_controller,
    "cartpole_controller": cartpole_controller,
    "cartpole_wrong_controller": cartpole_wrong_controller,
    "acrobot_controller": acrobot_controller,
}


@dataclass(frozen=True)
class PolicyMix:
    """``episodes`` episodes of ``policy`` ("random" or a controller name) with action noise ``noise``: for Box
    actions Gaussian noise of that std (a fraction of the action range's half-width), for Discrete actions the
    probability of a uniformly random action instead of the controller's."""

    policy: str
    episodes: int
    noise: float = 0.0


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset_id: str
    env_id: str
    mix: tuple[PolicyMix, ...]
    expert: str  # controller whose noiseless return is ref_max_score
    description: str
    reference_episodes: int = 20


def _frozen(maze_map: list[list[int | str]]) -> tuple[tuple[int | str, ...], ...]:
    return tuple(tuple(row) for row in maze_map)


RECIPES: dict[str, Recipe | MazeRecipe] = {
    r.name: r
    for r in (
        Recipe(
            "pendulum-mixed",
            "iql/pendulum/mixed-v0",
            "Pendulum-v1",
            (PolicyMix("pendulum_controller", 60, noise=0.3), PolicyMix("random", 140)),
            "pendulum_controller",
            "Pendulum-v1, mixed quality: 30% noisy swing-up controller episodes, 70% uniformly random episodes.",
        ),
        Recipe(
            "pendulum-expert",
            "iql/pendulum/expert-v0",
            "Pendulum-v1",
            (PolicyMix("pendulum_controller", 100, noise=0.1),),
            "pendulum_controller",
            "Pendulum-v1, swing-up controller with small action noise.",
        ),
        Recipe(
            "pendulum-random",
            "iql/pendulum/random-v0",
            "Pendulum-v1",
            (PolicyMix("random", 100),),
            "pendulum_controller",
            "Pendulum-v1, uniformly random actions.",
        ),
        Recipe(
            "inverted-pendulum-mixed",
            "iql/inverted-pendulum/mixed-v0",
            "InvertedPendulum-v5",
            (PolicyMix("inverted_pendulum_controller", 20, noise=0.3), PolicyMix("random", 200)),
            "inverted_pendulum_controller",
            "InvertedPendulum-v5 (MuJoCo, terminates when the pole falls): noisy balance controller + random.",
        ),
        Recipe(
            "cartpole-mixed",
            "iql/cartpole/mixed-v0",
            "CartPole-v1",
            (PolicyMix("cartpole_controller", 6, noise=0.2), PolicyMix("cartpole_wrong_controller", 1500, noise=0.8)),
            "cartpole_controller",
            "CartPole-v1 (discrete), mixed quality: 6 balancing episodes (20% random actions) and 1500 episodes whose "
            "actions are 60% wrong (a sign-flipped controller with 80% random actions), which hold the majority of "
            "actions in the upright states: greedy BC copies them, IQL must not.",
        ),
        Recipe(
            "acrobot-mixed",
            "iql/acrobot/mixed-v0",
            "Acrobot-v1",
            (PolicyMix("acrobot_controller", 30, noise=0.3), PolicyMix("random", 30)),
            "acrobot_controller",
            "Acrobot-v1 (discrete, 3 torques), mixed quality: energy-pumping controller with 30% random actions, "
            "and uniformly random episodes.",
        ),
        MazeRecipe(
            "pointmaze-umaze-mixed",
            "iql/pointmaze/umaze-mixed-v0",
            "PointMaze_UMaze-v3",
            _frozen(UMAZE_MAP),
            (MazeMix("wander", 150, noise=0.5), MazeMix("goal", 50, noise=0.5)),
            data_episode_steps=300,
            eval_episode_steps=300,
            goal_starts_min_distance=3,
            wander_min_goal_distance=2,
            description="PointMaze UMaze, goal top left, evaluation start bottom left: 75% episodes wandering between "
            "random cells ≥ 2 cells from the goal (commanded cell not observed), 25% noisy waypoint-controller runs "
            "to the goal from cells ≥ 3 cells from the start, ending at the goal. Sparse reward, infos/success.",
        ),
        MazeRecipe(
            "pointmaze-medium-mixed",
            "iql/pointmaze/medium-mixed-v0",
            "PointMaze_Medium-v3",
            _frozen(MEDIUM_MAP),
            (MazeMix("wander", 200, noise=0.5), MazeMix("goal", 60, noise=0.5)),
            data_episode_steps=400,
            eval_episode_steps=600,
            goal_starts_min_distance=7,
            wander_min_goal_distance=3,
            description="PointMaze Medium, start top left, goal bottom right: 77% episodes wandering between random "
            "cells ≥ 3 cells from the goal, 23% noisy waypoint-controller runs to the goal from cells ≥ 7 cells from "
            "the start. Sparse reward, infos/success.",
        ),
    )
}


def recipe_for(dataset_id: str) -> Recipe | MazeRecipe | None:
    """The recipe that builds ``dataset_id``, if any."""
    return next((r for r in RECIPES.values() if r.dataset_id == dataset_id), None)


def _act(policy: str, env: gym.Env, obs: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray | int:
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        if policy == "random" or rng.random() < noise:
            return int(space.start + rng.integers(space.n))
        return int(CONTROLLERS[policy](obs, rng))
    assert isinstance(space, gym.spaces.Box)
    if policy == "random":
        return rng.uniform(space.low, space.high).astype(space.dtype)
    action = np.asarray(CONTROLLERS[policy](obs, rng))
    half_width = (space.high - space.low) / 2.0
    action = action + noise * half_width * rng.standard_normal(action.shape)
    return np.clip(action, space.low, space.high).astype(space.dtype)


def rollout(env: gym.Env, policy: str, noise: float, seed: int) -> dict[str, np.ndarray]:
    """One episode as Minari's buffer fields: observations (T+1, O), actions (T, A), rewards, terminations,
    truncations (T,)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    done = False
    while not done:
        action = _act(policy, env, obs, noise, rng)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    return {
        "observations": np.asarray(observations),
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards),
        "terminations": np.asarray(terminations),
        "truncations": np.asarray(truncations),
    }


def reference_score(env: gym.Env, policy: str, episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``policy`` (noiseless) over ``episodes`` episodes."""
    return float(np.mean([rollout(env, policy, 0.0, seed + i)["rewards"].sum() for i in range(episodes)]))


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".iql-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def datasets_root() -> Path:
    """Minari's local dataset folder: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    path = os.environ.get("MINARI_DATASETS_PATH")
    return Path(path) if path else Path.home() / ".minari" / "datasets"


def dataset_exists(dataset_id: str) -> bool:
    return (datasets_root() / dataset_id / "data").exists()


STAGING_PREFIX = ".iql-build-"  # staging folders of builds in progress, next to the datasets


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove the staging folders that killed builds left in ``root``; call only while holding ``_locked(root)``.

    A build creates and fills its staging folder only while it holds the root's lock, and the kernel releases an
    ``flock`` when its holder dies: so a staging folder seen by the lock's holder belongs to a dead builder.
    """
    stale = [path for path in root.glob(f"{STAGING_PREFIX}*") if path.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


@dataclass
class _Contents:
    """What a recipe's rollouts give Minari: episode buffers, the environments and the reference scores."""

    buffers: list[Any]
    env: Any  # id or EnvSpec of the data environment
    eval_env: Any  # id or EnvSpec of the evaluation environment
    ref_min: float
    ref_max: float
    algorithm_name: str


def _control_contents(recipe: Recipe, seed: int, progress: bool) -> _Contents:
    from minari.data_collector import EpisodeBuffer
    from tqdm.auto import tqdm

    env = gym.make(recipe.env_id)
    total = sum(part.episodes for part in recipe.mix)
    buffers, episode = [], 0
    with tqdm(total=total, desc=f"building {recipe.dataset_id}", disable=not progress, unit="ep") as bar:
        for part in recipe.mix:
            for _ in range(part.episodes):
                fields = rollout(env, part.policy, part.noise, seed * 1_000_003 + episode)
                buffers.append(EpisodeBuffer(id=episode, seed=seed * 1_000_003 + episode, infos={}, **fields))
                episode += 1
                bar.update()
    reference_seed = 10_000_000 + seed
    return _Contents(
        buffers,
        recipe.env_id,
        recipe.env_id,
        reference_score(env, "random", recipe.reference_episodes, reference_seed),
        reference_score(env, recipe.expert, recipe.reference_episodes, reference_seed),
        " + ".join(f"{p.policy}(noise={p.noise})×{p.episodes}" for p in recipe.mix),
    )


def _maze_contents(recipe: MazeRecipe, seed: int, progress: bool) -> _Contents:
    """Maze episodes; references in evaluation episodes (which end at the first success, reward 1 there): the
    random policy's and the noiseless waypoint controller's success rates, so the normalised return from the
    evaluation start is the success rate, as in D4RL AntMaze (ref 0 and 1)."""
    from minari.data_collector import EpisodeBuffer

    episodes = maze.collect(recipe, seed, progress)
    buffers = [
        EpisodeBuffer(id=i, seed=seed * 1_000_003 + i, **episode)  # type: ignore[arg-type]
        for i, episode in enumerate(episodes)
    ]
    reference_seed = 10_000_000 + seed
    return _Contents(
        buffers,
        recipe.spec(recipe.data_episode_steps),
        recipe.spec(recipe.eval_episode_steps),
        maze.random_success_rate(recipe, recipe.reference_episodes, reference_seed),
        maze.success_rate_of_controller(recipe, recipe.reference_episodes, reference_seed),
        "BFS waypoint controller + PD: " + " + ".join(f"{p.kind}(noise={p.noise})×{p.episodes}" for p in recipe.mix),
    )


def build(recipe: Recipe | MazeRecipe, seed: int = 0, progress: bool = True) -> Path:
    """Build ``recipe`` into the local Minari folder unless it is there already; return the dataset's folder."""
    import minari  # heavy import, only when building

    root = datasets_root()
    final = root / recipe.dataset_id
    with _locked(root):
        for path in remove_stale_staging(root):
            log.info("removed %s, left behind by a killed dataset build", path)
        if (final / "data").exists():
            return final
        if isinstance(recipe, MazeRecipe):
            contents = _maze_contents(recipe, seed, progress)
        else:
            contents = _control_contents(recipe, seed, progress)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
        previous = os.environ.get("MINARI_DATASETS_PATH")
        try:
            os.environ["MINARI_DATASETS_PATH"] = str(staging)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Minari warns about the missing expert policy and the infos' shape
                minari.create_dataset_from_buffers(
                    dataset_id=recipe.dataset_id,
                    buffer=contents.buffers,
                    env=contents.env,
                    eval_env=contents.eval_env,
                    algorithm_name=contents.algorithm_name,
                    author="iql toolkit",
                    author_email="iql@localhost",
                    code_permalink="iql/data/recipes.py",
                    ref_min_score=contents.ref_min,
                    ref_max_score=contents.ref_max,
                    description=recipe.description,
                    data_format="hdf5",
                )
            final.parent.mkdir(parents=True, exist_ok=True)
            _copy_namespace_metadata(staging, root, recipe.dataset_id)
            os.rename(staging / recipe.dataset_id, final)
        except OSError as error:
            raise DatasetError(
                f"Could not write dataset {recipe.dataset_id} under {root}: {error}. "
                "Point MINARI_DATASETS_PATH at a writable folder."
            ) from error
        finally:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _copy_namespace_metadata(staging: Path, root: Path, dataset_id: str) -> None:
    """Minari keeps a ``namespace_metadata.json`` per namespace folder; copy the ones the root lacks."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        relative = Path(*parts[:depth]) / "namespace_metadata.json"
        if (staging / relative).exists() and not (root / relative).exists():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            tmp = root / relative.with_suffix(".json.tmp")
            shutil.copyfile(staging / relative, tmp)
            os.replace(tmp, root / relative)

"""Build real Minari datasets locally from behaviour policies, for machines with no network and for tests.

A *recipe* names an environment, a mix of behaviour policies (each with a noise level and an episode count) and
the policies that define the reference scores (random → ``ref_min_score``, the noiseless controller →
``ref_max_score``). The dataset is written with hdf5 into a temporary root and moved into
``$MINARI_DATASETS_PATH`` with one ``rename``, under a file lock, so parallel jobs and a kill at any moment never
leave a half-written dataset.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from iql.errors import DatasetError

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


RECIPES: dict[str, Recipe] = {
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
    )
}


def recipe_for(dataset_id: str) -> Recipe | None:
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


def build(recipe: Recipe, seed: int = 0, progress: bool = True) -> Path:
    """Build ``recipe`` into the local Minari folder unless it is there already; return the dataset's folder."""
    import minari  # heavy import, only when building
    from minari.data_collector import EpisodeBuffer
    from tqdm.auto import tqdm

    root = datasets_root()
    final = root / recipe.dataset_id
    with _locked(root):
        if (final / "data").exists():
            return final
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
        ref_min = reference_score(env, "random", recipe.reference_episodes, reference_seed)
        ref_max = reference_score(env, recipe.expert, recipe.reference_episodes, reference_seed)
        staging = Path(tempfile.mkdtemp(prefix=".iql-build-", dir=root))
        previous = os.environ.get("MINARI_DATASETS_PATH")
        try:
            os.environ["MINARI_DATASETS_PATH"] = str(staging)
            minari.create_dataset_from_buffers(
                dataset_id=recipe.dataset_id,
                buffer=buffers,
                env=recipe.env_id,
                eval_env=recipe.env_id,
                algorithm_name=" + ".join(f"{p.policy}(noise={p.noise})×{p.episodes}" for p in recipe.mix),
                author="iql toolkit",
                author_email="iql@localhost",
                code_permalink="iql/data/recipes.py",
                ref_min_score=ref_min,
                ref_max_score=ref_max,
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

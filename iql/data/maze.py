"""Goal-reaching datasets on Gymnasium-Robotics PointMaze, built offline with a scripted waypoint controller.

The controller plans a shortest path over the maze's free cells (breadth-first search) and steers the point with
PD control toward the centre of the next cell on it, as Minari's and D4RL's maze datasets were collected
(``WaypointController``: gains p = 10, d = −1). Episodes come in two kinds:

- ``wander``: the point is sent to one random cell after another, only cells at least
  ``wander_min_goal_distance`` cells from the goal (the commanded cell is *not* in the observation, like D4RL's
  AntMaze "play"/"diverse" data), with Gaussian action noise. Most of the data.
- ``goal``: the point is sent to the evaluation goal from a random start cell *other than* the evaluation start
  region, with action noise; recording stops at the first success.

``desired_goal`` is the fixed evaluation goal in every episode and the reward is the environment's sparse reward
(1 within 0.45 of the goal), so a policy that reaches the goal from the evaluation start must *stitch* wandering
segments to the goal-reaching ones: behaviour cloning averages the wandering directions, IQL follows the values.
The data environment is continuing (``continuing_task=True``, ``reset_target=False``), as in Minari's datasets;
``infos["success"]`` is recorded at every step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from iql.errors import DatasetError

Cell = tuple[int, int]

KP, KD = 10.0, 1.0  # PD gains of Minari's pointmaze WaypointController (p = 10, d = −1)

# Gymnasium-Robotics maze maps with a fixed goal "g" and reset cell "r" (1 wall, 0 free)
UMAZE_MAP: list[list[int | str]] = [
    [1, 1, 1, 1, 1],
    [1, "g", 0, 0, 1],
    [1, 1, 1, 0, 1],
    [1, "r", 0, 0, 1],
    [1, 1, 1, 1, 1],
]
MEDIUM_MAP: list[list[int | str]] = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, "r", 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, "g", 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]


def free_cells(maze_map: list[list[int | str]]) -> list[Cell]:
    return [(r, c) for r, row in enumerate(maze_map) for c, v in enumerate(row) if v != 1]


def find_cell(maze_map: list[list[int | str]], letter: str) -> Cell:
    return next((r, c) for r, row in enumerate(maze_map) for c, v in enumerate(row) if v == letter)


def next_hops(maze_map: list[list[int | str]]) -> dict[tuple[Cell, Cell], Cell]:
    """``(cell, target) → next cell`` on a shortest 4-connected path (BFS from every target); target → itself."""
    cells = set(free_cells(maze_map))
    hops: dict[tuple[Cell, Cell], Cell] = {}
    for target in cells:
        hops[(target, target)] = target
        queue = deque([target])
        while queue:
            cell = queue.popleft()
            r, c = cell
            for neighbour in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if neighbour in cells and (neighbour, target) not in hops:
                    hops[(neighbour, target)] = cell  # from neighbour, step toward the target through cell
                    queue.append(neighbour)
    return hops


def distances(maze_map: list[list[int | str]], target: Cell) -> dict[Cell, int]:
    """Shortest path length in cells from every free cell to ``target``."""
    hops = next_hops(maze_map)
    out = {}
    for cell in free_cells(maze_map):
        steps, here = 0, cell
        while here != target:
            here, steps = hops[(here, target)], steps + 1
        out[cell] = steps
    return out


class WaypointController:
    """PD control toward the next cell centre on a BFS shortest path to ``target`` (a cell and an exact point)."""

    def __init__(self, maze: Any, maze_map: list[list[int | str]]) -> None:
        self.maze = maze
        self.hops = next_hops(maze_map)

    def cell(self, xy: np.ndarray) -> Cell:
        r, c = self.maze.cell_xy_to_rowcol(xy)
        return int(r), int(c)

    def action(self, obs: dict[str, np.ndarray], target_cell: Cell, target_xy: np.ndarray) -> np.ndarray:
        position, velocity = obs["observation"][:2], obs["observation"][2:4]
        here = self.cell(position)
        hop = self.hops.get((here, target_cell), target_cell)
        waypoint = target_xy if hop == target_cell else self.maze.cell_rowcol_to_xy(np.array(hop))
        return np.clip(KP * (waypoint - position) - KD * velocity, -1.0, 1.0)


@dataclass(frozen=True)
class MazeMix:
    """``episodes`` episodes of ``kind`` (wander | goal) with Gaussian action noise of std ``noise``."""

    kind: str
    episodes: int
    noise: float


@dataclass(frozen=True)
class MazeRecipe:
    """A PointMaze dataset: maze map (with "g" goal and "r" evaluation start), episode mix and episode lengths.

    ``goal_starts_min_distance``: goal-reaching episodes start only in cells at least this many cells (on the
    shortest path) from the evaluation start, so no demonstration covers the start: the policy must stitch.
    ``wander_min_goal_distance``: wandering episodes are sent only to cells at least this far from the goal, so
    near the goal the aimless data leads away from it and cloning it dithers.
    """

    name: str
    dataset_id: str
    env_id: str
    maze_map: tuple[tuple[int | str, ...], ...]
    mix: tuple[MazeMix, ...]
    data_episode_steps: int  # length of a recorded wander episode (the data env's time limit)
    eval_episode_steps: int  # time limit of the evaluation env
    goal_starts_min_distance: int
    description: str
    wander_min_goal_distance: int = 0  # wandering targets only cells at least this many cells from the goal
    reference_episodes: int = 20

    @property
    def map_list(self) -> list[list[int | str]]:
        return [list(row) for row in self.maze_map]

    def env_kwargs(self) -> dict[str, Any]:
        return {"maze_map": self.map_list, "continuing_task": True, "reset_target": False}

    def make_env(self, max_episode_steps: int) -> gym.Env:
        try:
            import gymnasium_robotics
        except ImportError as error:
            raise DatasetError(
                f"Recipe {self.name} needs Gymnasium-Robotics for {self.env_id}: `pip install -e '.[robotics]'`."
            ) from error
        gym.register_envs(gymnasium_robotics)
        return gym.make(self.env_id, max_episode_steps=max_episode_steps, **self.env_kwargs())

    def spec(self, max_episode_steps: int) -> gym.envs.registration.EnvSpec:
        """The ``EnvSpec`` (with this maze's kwargs) Minari stores, so ``recover_environment`` rebuilds the env."""
        env = self.make_env(max_episode_steps)
        try:
            assert env.spec is not None
            return env.spec
        finally:
            env.close()


def cell_xy(env: gym.Env, cell: Cell) -> np.ndarray:
    return np.asarray(env.unwrapped.maze.cell_rowcol_to_xy(np.array(cell)))  # type: ignore[attr-defined]


def _rollout(
    env: gym.Env,
    controller: WaypointController,
    recipe: MazeRecipe,
    kind: str,
    noise: float,
    seed: int,
) -> dict[str, Any]:
    """One episode in Minari's buffer layout: Dict observations (T+1), actions, rewards, terminations,
    truncations (T) and ``infos["success"]`` (T+1, the reset's first)."""
    rng = np.random.default_rng(seed)
    maze_map = recipe.map_list
    cells = free_cells(maze_map)
    start_cell = find_cell(maze_map, "r")
    goal_cell = find_cell(maze_map, "g")
    wander_targets = [c for c, d in distances(maze_map, goal_cell).items() if d >= recipe.wander_min_goal_distance]
    if kind == "goal":
        far = distances(maze_map, start_cell)
        starts = [c for c in cells if far[c] >= recipe.goal_starts_min_distance and c != goal_cell]
    else:
        starts = cells
    reset_cell = starts[int(rng.integers(len(starts)))]
    obs, info = env.reset(seed=seed, options={"reset_cell": np.array(reset_cell), "goal_cell": np.array(goal_cell)})
    goal_xy = np.asarray(obs["desired_goal"])
    target = goal_cell
    if kind == "wander":
        target = wander_targets[int(rng.integers(len(wander_targets)))]
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    success = [bool(info["success"])]
    done = False
    while not done:
        target_xy = goal_xy if target == goal_cell else cell_xy(env, target)
        action = controller.action(obs, target, target_xy) + noise * rng.standard_normal(2)
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        success.append(bool(info["success"]))
        if kind == "wander" and np.linalg.norm(obs["achieved_goal"] - target_xy) < 0.3:
            target = wander_targets[int(rng.integers(len(wander_targets)))]  # arrived: on to another random cell
        if kind == "goal" and info["success"]:
            truncated = True  # the demonstration ends at its first success
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = bool(terminated or truncated)
    return {
        "observations": {key: np.asarray([o[key] for o in observations]) for key in observations[0]},
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards),
        "terminations": np.asarray(terminations),
        "truncations": np.asarray(truncations),
        "infos": {"success": np.asarray(success)},
    }


Actor = Callable[[dict[str, np.ndarray]], np.ndarray]  # observation dict → action


def controller_actor(recipe: MazeRecipe, seed: int, noise: float = 0.0) -> Callable[[gym.Env], Actor]:
    """The waypoint controller towards the goal cell, with Gaussian action noise of std ``noise``."""

    def make(env: gym.Env) -> Actor:
        controller = WaypointController(env.unwrapped.maze, recipe.map_list)  # type: ignore[attr-defined]
        goal_cell = find_cell(recipe.map_list, "g")
        rng = np.random.default_rng(seed)

        def act(obs: dict[str, np.ndarray]) -> np.ndarray:
            action = controller.action(obs, goal_cell, obs["desired_goal"]) + noise * rng.standard_normal(2)
            return np.clip(action, -1, 1).astype(np.float32)

        return act

    return make


def random_actor(seed: int) -> Callable[[gym.Env], Actor]:
    """Uniformly random actions from the env's own (seeded) action space."""

    def make(env: gym.Env) -> Actor:
        env.action_space.seed(seed)
        return lambda obs: env.action_space.sample()

    return make


def success_rate(recipe: MazeRecipe, episodes: int, seed: int, make_actor: Callable[[gym.Env], Actor]) -> float:
    """Success rate (0–1) from the evaluation start, in evaluation episodes, of the actor ``make_actor`` builds for
    the evaluation env; an episode ends at its first success."""
    env = recipe.make_env(recipe.eval_episode_steps)
    wins = 0
    try:
        act = make_actor(env)
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(act(obs))
                if info["success"]:
                    wins += 1
                    break
                done = terminated or truncated
    finally:
        env.close()
    return wins / episodes


def collect(recipe: MazeRecipe, seed: int, progress: bool = True) -> list[dict[str, Any]]:
    """Every episode of ``recipe``'s mix, in Minari's buffer layout."""
    from tqdm.auto import tqdm

    env = recipe.make_env(recipe.data_episode_steps)
    controller = WaypointController(env.unwrapped.maze, recipe.map_list)  # type: ignore[attr-defined]
    episodes: list[dict[str, Any]] = []
    total = sum(part.episodes for part in recipe.mix)
    try:
        with tqdm(total=total, desc=f"building {recipe.dataset_id}", disable=not progress, unit="ep") as bar:
            for part in recipe.mix:
                for _ in range(part.episodes):
                    episode_seed = seed * 1_000_003 + len(episodes)
                    episodes.append(_rollout(env, controller, recipe, part.kind, part.noise, episode_seed))
                    bar.update()
    finally:
        env.close()
    return episodes

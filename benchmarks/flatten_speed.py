"""Seconds to flatten a Minari dataset of ~1M transitions into ``Transitions``: hdf5 fast path vs Minari's reader.

    python benchmarks/flatten_speed.py                       # 1000 episodes × 1000 steps, obs 11, act 3
    python benchmarks/flatten_speed.py --episodes 200 --infos

Builds a synthetic dataset with ``minari.create_dataset_from_buffers(..., data_format="hdf5")`` in a temporary
``MINARI_DATASETS_PATH`` (or ``--root``, reused if already built), then times ``flatten_episodes`` with the
direct hdf5 reader and with the generic ``storage.get_episodes`` path, interleaved, and checks both give the same
arrays. ``--infos`` stores per-step infos as MuJoCo datasets do (the generic reader decodes them; the fast one
skips them). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from iql.data.transitions import flatten_episodes

OBS_DIM, ACT_DIM = 11, 3


def build(dataset_id: str, episodes: int, steps: int, infos: bool) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for episode in range(episodes):
        terminated = episode % 3 == 0  # a third of the episodes terminate, the rest are truncated
        buffers.append(
            EpisodeBuffer(
                id=episode,
                seed=episode,
                observations=rng.standard_normal((steps + 1, OBS_DIM)),
                actions=rng.uniform(-1, 1, (steps, ACT_DIM)).astype(np.float32),
                rewards=rng.standard_normal(steps),
                terminations=np.arange(steps) == steps - 1 if terminated else np.zeros(steps, bool),
                truncations=np.zeros(steps, bool) if terminated else np.arange(steps) == steps - 1,
                infos={"x_position": rng.standard_normal(steps + 1), "x_velocity": rng.standard_normal(steps + 1)}
                if infos
                else {},
            )
        )
    minari.create_dataset_from_buffers(
        dataset_id=dataset_id,
        buffer=buffers,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
        action_space=gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        algorithm_name="synthetic",
        description="synthetic Hopper-shaped dataset for benchmarks/flatten_speed.py",
        data_format="hdf5",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000, help="steps per episode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--infos", action="store_true", help="store per-step infos, as MuJoCo datasets do")
    parser.add_argument("--root", type=Path, default=None, help="MINARI_DATASETS_PATH to build in (default: temp)")
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="iql-flatten-"))
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    import minari

    dataset_id = f"bench/synthetic-e{args.episodes}-s{args.steps}{'-infos' if args.infos else ''}-v0"
    if dataset_id not in minari.list_local_datasets():
        start = time.perf_counter()
        build(dataset_id, args.episodes, args.steps, args.infos)
        print(f"built {dataset_id} in {time.perf_counter() - start:.1f} s under {root}")
    dataset = minari.load_dataset(dataset_id)

    times: dict[str, list[float]] = {"hdf5": [], "generic": []}
    results = {}
    for _ in range(args.repeats):
        for path in times:
            start = time.perf_counter()
            results[path] = flatten_episodes(dataset, fast=path == "hdf5")
            times[path].append(time.perf_counter() - start)
    fast, generic = results["hdf5"], results["generic"]
    identical = all(
        np.array_equal(getattr(fast, name), getattr(generic, name))
        for name in ("obs", "actions", "rewards", "next_obs", "terminals", "episode_ends")
    )
    transitions = len(fast)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"{transitions} transitions in {args.episodes} episodes, load average {load}")
    print(f"{'reader':10s} {'seconds':>8s} {'s per 1M transitions':>21s}")
    for path, values in times.items():
        seconds = statistics.median(values)
        print(f"{path:10s} {seconds:8.2f} {seconds / transitions * 1e6:21.2f}")
    print(f"identical arrays: {identical}")
    median = {path: statistics.median(values) for path, values in times.items()}
    print(
        json.dumps(
            {
                "transitions": transitions,
                "episodes": args.episodes,
                "infos": args.infos,
                "hdf5_s": round(median["hdf5"], 3),
                "generic_s": round(median["generic"], 3),
                "hdf5_s_per_million": round(median["hdf5"] / transitions * 1e6, 3),
                "generic_s_per_million": round(median["generic"] / transitions * 1e6, 3),
                "speedup": round(median["generic"] / median["hdf5"], 2),
                "identical": identical,
                "load_average": load,
            }
        )
    )


if __name__ == "__main__":
    main()

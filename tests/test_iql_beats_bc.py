"""The reason IQL exists: on mixed-quality data it extracts a better policy than behaviour cloning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import launch, sweep_summaries


@pytest.mark.slow
def test_iql_beats_bc_on_the_default_mixed_dataset(tmp_path: Path, pendulum_dataset: str) -> None:
    # the default dataset, network and hyperparameters; a shorter run (IQL is near its plateau by 4k steps)
    result = launch(
        "-m",
        "algorithm=iql,bc",
        "seed=0,1,2",
        "train.steps=4000",
        "train.eval_every=2000",
        "eval.episodes=20",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sweep_summaries(tmp_path)
    assert len(summaries) == 6
    scores = {name: [s["normalized_score"] for s in summaries if s["algorithm"] == name] for name in ("iql", "bc")}
    iql, bc = np.mean(scores["iql"]), np.mean(scores["bc"])
    print(f"normalized score over 3 seeds: IQL {iql:.1f} {scores['iql']}, BC {bc:.1f} {scores['bc']}")
    assert iql > bc + 25.0, scores
    assert min(scores["iql"]) > max(scores["bc"]), scores

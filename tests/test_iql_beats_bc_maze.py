"""IQL's headline claim, at laptop scale: on goal-reaching data that must be stitched, IQL reaches the goal where
behaviour cloning does not."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import launch, require_robotics, sweep_summaries

require_robotics()


@pytest.mark.slow
def test_iql_beats_bc_on_success_rate_in_the_local_pointmaze(tmp_path: Path) -> None:
    # experiment=pointmaze as shipped (τ 0.9, β 10, r − 1, goal terminals, 50 evaluation episodes ending at the goal);
    # two jobs at a time, one thread each
    started = time.monotonic()
    result = launch(
        "-m",
        "experiment=pointmaze",
        "algorithm=iql_antmaze,bc",
        "seed=0,1,2",
        "hardware=local_parallel",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sweep_summaries(tmp_path)
    assert len(summaries) == 6 and all(s["score_of_record"] == "success_rate" for s in summaries)
    rates = {name: [s["success_rate"] for s in summaries if s["algorithm"] == name] for name in ("iql", "bc")}
    iql, bc = np.mean(rates["iql"]), np.mean(rates["bc"])
    print(f"success rate over 3 seeds: IQL {iql:.1f} {rates['iql']}, BC {bc:.1f} {rates['bc']}")
    print(f"sweep took {time.monotonic() - started:.0f} s")
    assert iql > bc + 40.0, rates
    assert min(rates["iql"]) > max(rates["bc"]), rates

"""The point of fine-tuning: where offline IQL stays below the expert, online steps raise the score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import launch, sweep_summaries


@pytest.mark.slow
def test_finetuning_raises_the_score_by_20_points(tmp_path: Path) -> None:
    # experiment=pendulum_finetune as shipped, two seeds side by side (one thread each)
    result = launch(
        "-m",
        "experiment=pendulum_finetune",
        "seed=0,1",
        "logger=none",
        "hardware=local_parallel",
        f"hydra.sweep.dir={tmp_path}",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sweep_summaries(tmp_path)
    assert len(summaries) == 2
    offline = [s["offline_score"] for s in summaries]
    final = [s["normalized_score"] for s in summaries]
    print(f"normalized score per seed: offline at the switch {offline}, after fine-tuning {final}")
    assert np.mean(final) - np.mean(offline) >= 20.0, (offline, final)
    assert np.mean(offline) < 80.0, "offline IQL must stay clearly below the expert for this test to mean anything"

"""What ``python -m iql.report`` claims, on run dirs written as launch.py writes them (no training): rliable's own
intervals, a winner only where intervals separate, runs that failed at start-up apart, searches as scatters."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

DATASET = "iql/pendulum/mixed-v0"
REPS = 300  # enough to test with; the report's default is 2000


def fake_run(
    run_dir: Path,
    *,
    seed: int,
    score: float | None,
    expectile: float = 0.7,
    beta: float = 3.0,
    algorithm: str = "iql",
    steps: int = 100,
    error: str | None = None,
    dataset: str = DATASET,
) -> Path:
    """A run dir as launch.py leaves it: .hydra/config.yaml always; metrics.jsonl and summary.json when it trained
    (``score`` not None); error.txt when it failed."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "algorithm": {"name": algorithm, "expectile": expectile, "beta": beta},
        "dataset": {"id": dataset},
        "train": {"steps": steps},
        "logger": {"project": "iql"},
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if error is not None:
        (run_dir / "error.txt").write_text(error + "\n")
    if score is not None:
        rows = [
            {"step": steps // 2, "eval/normalized_score": score - 5},
            {"step": steps, "eval/normalized_score": score},
        ]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        summary = {"algorithm": algorithm, "expectile": expectile, "beta": beta, "seed": seed, "dataset_id": dataset}
        summary |= {"normalized_score": score, "best_normalized_score": score, "return_mean": score, "steps": steps}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def fake_sweep(root: Path, configs: dict[tuple[float, float], list[float]], **kwargs: object) -> Path:
    """One run dir per (τ, β) and seed, numbered like a Hydra multirun; scores per seed in list order."""
    job = 0
    for (expectile, beta), scores in configs.items():
        for seed, score in enumerate(scores):
            fake_run(root / str(job), seed=seed, score=score, expectile=expectile, beta=beta, **kwargs)  # type: ignore[arg-type]
            job += 1
    return root


def report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iql.report", *map(str, args), "--reps", str(REPS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_intervals_equal_rliables_own_estimates(tmp_path: Path) -> None:
    from rliable import library, metrics

    scores = [61.0, 48.5, 70.25, 55.0, 66.5]
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): scores, (0.9, 10.0): [40.0, 45.0, 42.0, 47.0, 39.0]})
    result = report(sweep, "--seed", "7")
    assert result.returncode == 0, result.stderr
    row = next(r for r in csv_rows(sweep / "report.csv") if r["expectile"] == "0.7")

    np.random.seed(7)  # rliable 1.2's StratifiedBootstrap draws from NumPy's global generator
    point, interval = library.get_interval_estimates(
        {"iql": np.array(scores).reshape(-1, 1)},
        lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]),
        reps=REPS,
        random_state=np.random.RandomState(7),
    )
    expected = {
        "final_mean_ci_low": interval["iql"][0, 0],
        "final_mean_ci_high": interval["iql"][1, 0],
        "final_iqm": point["iql"][1],
        "final_iqm_ci_low": interval["iql"][0, 1],
        "final_iqm_ci_high": interval["iql"][1, 1],
    }
    assert {key: float(row[key]) for key in expected} == expected  # exact: same matrix, reps and RandomState seed
    assert float(row["final_iqm"]) == pytest.approx((55.0 + 61.0 + 66.5) / 3)  # mean of the middle 3 of 5 seeds


def test_one_seed_sweep_names_no_winner(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.5, 3.0): [50.0], (0.7, 3.0): [51.0], (0.9, 3.0): [53.0]})
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert "**No winner named**" in markdown and "Winner" not in markdown and "Best:" not in markdown
    assert "fewer than 2 finished seeds" in markdown and "n < 2" in markdown
    assert "no winner named" in result.stdout
    assert "1 of 1 finished (seeds 0)" in markdown
    assert (sweep / "heatmap-pendulum-mixed-v0.png").exists()  # three τ at one β is still a grid


def test_winner_only_where_intervals_separate(tmp_path: Path) -> None:
    separated = fake_sweep(
        tmp_path / "separated",
        {(0.7, 3.0): [50.0, 52.0, 51.0, 49.0], (0.9, 10.0): [80.0, 82.0, 81.0, 83.0], (0.5, 1.0): [20.0, 22, 21, 23]},
    )
    result = report(separated)
    assert result.returncode == 0, result.stderr
    markdown = (separated / "report.md").read_text()
    assert "**Winner: iql τ=0.9 β=10**" in markdown
    assert "P(iql τ=0.9 β=10 > iql τ=0.7 β=3 (the default)) = 1.00 [1.00, 1.00]: evidence of improvement" in markdown

    overlapping = fake_sweep(
        tmp_path / "overlapping", {(0.7, 3.0): [50.0, 60.0, 40.0], (0.9, 10.0): [52.0, 62.0, 45.0]}
    )
    result = report(overlapping)
    assert result.returncode == 0, result.stderr
    markdown = (overlapping / "report.md").read_text()
    assert "**No winner named**: no evidence of a difference" in markdown and "Winner:" not in markdown


def test_run_failed_at_start_up_is_listed_apart_and_adds_no_row(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0], (0.9, 3.0): [55.0, 57.0]})
    error = "algorithm.expectile=1.5 is invalid: the expectile τ must lie in (0, 1)."
    fake_run(sweep / "4", seed=0, score=None, expectile=1.5, error=error)
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    rows = csv_rows(sweep / "report.csv")
    assert sorted(row["expectile"] for row in rows) == ["0.7", "0.9"], "the failed run invented a row"
    markdown = (sweep / "report.md").read_text()
    assert "5 run dirs, 4 finished, 0 incomplete, 1 failed at start-up" in markdown
    section = markdown.split("## Failed at start-up", 1)[1]
    assert "| `4` | iql τ=1.5 β=3 | 0 | " + error in section
    assert "## Incomplete runs" not in markdown
    assert "failed: " in result.stdout and error in result.stdout
    assert (sweep / "heatmap-pendulum-mixed-v0.png").exists()


def test_search_is_drawn_as_a_scatter_and_bc_as_a_baseline(tmp_path: Path) -> None:
    pairs = [(0.52, 0.4), (0.61, 2.2), (0.66, 11.0), (0.74, 0.9), (0.83, 25.0), (0.9, 4.1), (0.94, 1.3)]
    sweep = fake_sweep(tmp_path / "sweep", {pair: [30.0 + i] for i, pair in enumerate(pairs)})  # an Optuna study
    for seed, score in enumerate([10.0, 12.0]):
        fake_run(sweep / f"bc{seed}", seed=seed, score=score, algorithm="bc")
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    assert (sweep / "scatter-pendulum-mixed-v0.png").exists() and not (sweep / "heatmap-pendulum-mixed-v0.png").exists()
    markdown = (sweep / "report.md").read_text()
    assert "Search (not a grid), best trials" in markdown and "**No winner named**" in markdown
    assert "P(iql" in markdown and "> bc): not estimated" in markdown  # the best trial has one seed


def test_runs_of_different_lengths_are_flagged(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "short", {(0.7, 3.0): [50.0, 52.0]}, steps=100)
    fake_sweep(tmp_path / "short" / "long", {(0.9, 3.0): [60.0, 61.0]}, steps=1000)
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    assert (
        "Runs of different lengths are compared here: train.steps = 100 (2 runs), 1000 (2 runs)"
        in (sweep / "report.md").read_text()
    )


@pytest.mark.parametrize("args", [["--vmin", "50", "--vmax", "10"], ["--reps", "0"], ["--seed", "-3"]])
def test_bad_report_options_fail_with_one_message(tmp_path: Path, args: list[str]) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0]})
    result = subprocess.run(
        [sys.executable, "-m", "iql.report", str(sweep), *args], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert args[1] in result.stderr and "pass" in result.stderr


def test_fixed_colour_range_is_used(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0], (0.9, 3.0): [51.0, 53.0]})
    result = report(sweep, "--vmin", "0", "--vmax", "100")
    assert result.returncode == 0, result.stderr
    assert (sweep / "heatmap-pendulum-mixed-v0.png").read_bytes()[:4] == b"\x89PNG"


def test_across_datasets_iqm_pools_seeds_and_datasets(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "a", {(0.7, 3.0): [50.0, 52.0, 51.0], (0.9, 3.0): [60.0, 61.0, 62.0]})
    fake_sweep(tmp_path / "a" / "b", {(0.7, 3.0): [30.0, 32.0, 31.0], (0.9, 3.0): [40.0, 41.0, 42.0]}, dataset="x/y-v0")
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    across = (sweep / "report.md").read_text().split("## Across datasets", 1)[1]
    assert "| iql τ=0.9 β=3 | 51.0 [" in across and "| 0, 1, 2 |" in across  # IQM of 6 scores: middle 3 of 6


def test_score_of_record_is_the_runs_own(tmp_path: Path) -> None:
    from iql.report.runs import RunRecord, read_run

    run_dir = fake_run(tmp_path / "run", seed=0, score=20.0)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary |= {"score_of_record": "success_rate", "success_rate": 75.0, "best_success_rate": 80.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    record = read_run(run_dir)
    assert isinstance(record, RunRecord) and record.metric == "success_rate"
    assert (record.final_score, record.best_score) == (75.0, 80.0)

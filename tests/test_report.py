"""``python -m iql.report`` on a small real sweep: the table equals the runs' summaries, figures exist, partly
finished sweeps list their missing runs, and bad paths fail with one clear message."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, launch, sweep_summaries
from wandb_records import read_offline_run

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "hardware.threads=1"]


def report(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iql.report", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def read_csv(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="") as handle:
        return {(row["algorithm"], row["expectile"], row["beta"]): row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, pendulum_dataset: str) -> Path:
    """8 tiny runs: τ ∈ {0.6, 0.8} × β ∈ {1, 3} × seeds {0, 1}, through the real entry point."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = launch(
        "-m",
        "algorithm.expectile=0.6,0.8",
        "algorithm.beta=1,3",
        "seed=0,1",
        *TINY,
        "train.steps=100",
        "train.log_every=50",
        "train.eval_every=50",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr
    assert len(list(sweep_dir.glob("*/summary.json"))) == 8
    return sweep_dir


def test_table_equals_the_runs_summaries(sweep: Path, tmp_path: Path) -> None:
    result = report(sweep, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = sweep_summaries(sweep)
    table = read_csv(tmp_path / "report.csv")
    assert len(table) == 4
    for (algorithm, expectile, beta), row in table.items():
        runs = [s for s in summaries if (s["expectile"], s["beta"]) == (float(expectile), float(beta))]
        final = [s["normalized_score"] for s in runs]
        best = [s["best_normalized_score"] for s in runs]
        assert algorithm == "iql" and row["n_seeds"] == "2" and row["seeds"] == "0 1" and row["n_incomplete"] == "0"
        assert float(row["final_mean"]) == pytest.approx(statistics.fmean(final), rel=1e-12)
        assert float(row["final_std"]) == pytest.approx(statistics.stdev(final), rel=1e-12)
        assert float(row["best_mean"]) == pytest.approx(statistics.fmean(best), rel=1e-12)
        assert float(row["best_std"]) == pytest.approx(statistics.stdev(best), rel=1e-12)
    for name in ("heatmap-pendulum-mixed-v0.png", "curves-pendulum-mixed-v0.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    markdown = (tmp_path / "report.md").read_text()
    assert "8 run dirs, 8 finished, 0 incomplete" in markdown and "heatmap-pendulum-mixed-v0.png" in markdown
    assert not list(tmp_path.glob(".*.tmp-*")), "a temporary file was left behind"


def test_partly_finished_sweep_lists_the_missing_run(sweep: Path, tmp_path: Path) -> None:
    partial = tmp_path / "sweep"
    shutil.copytree(sweep, partial)
    missing = partial / "3"
    config = json.loads((missing / "summary.json").read_text())
    (missing / "summary.json").unlink()

    result = report(partial)  # no --out: the report goes into the sweep dir
    assert result.returncode == 0, result.stderr
    row = read_csv(partial / "report.csv")[("iql", str(config["expectile"]), str(float(config["beta"])))]
    assert (row["n_seeds"], row["n_incomplete"]) == ("1", "1")
    assert row["final_std"] == ""  # one finished seed has no standard deviation
    markdown = (partial / "report.md").read_text()
    assert "8 run dirs, 7 finished, 1 incomplete" in markdown
    assert (
        "## Incomplete runs" in markdown and f"| `3` | iql τ={config['expectile']:g} β={config['beta']:g} |" in markdown
    )
    assert "last logged step 100 of 100" in markdown  # its metrics.jsonl still feeds the learning curves
    assert (partial / "heatmap-pendulum-mixed-v0.png").exists()


def test_report_is_logged_to_an_offline_wandb_run(sweep: Path, tmp_path: Path) -> None:
    result = report(sweep, "--out", tmp_path, "--wandb", env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    run = read_offline_run(tmp_path)
    assert run.run.job_type == "report" and run.run.project == "iql" and "report" in run.run.tags
    logged = run.history[0]
    assert {"table", "heatmap/pendulum-mixed-v0", "curves/pendulum-mixed-v0"} <= {
        key.split("/_type")[0] for key in logged
    }
    assert run.exit_code == 0


@pytest.mark.parametrize("make", ["empty", "missing", "no_config"])
def test_a_path_without_runs_fails_with_one_clear_message(tmp_path: Path, make: str) -> None:
    target = tmp_path / "runs"
    if make != "missing":
        target.mkdir()
    if make == "no_config":
        (target / "0").mkdir()
        (target / "0" / "metrics.jsonl").write_text('{"step": 1}\n')
    result = report(target)
    assert result.returncode == 2
    assert str(target) in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert {"empty": "No runs found", "missing": "does not exist", "no_config": "No readable run"}[
        make
    ] in result.stderr


def test_bc_runs_are_their_own_row(tmp_path: Path) -> None:
    for seed, score in enumerate([10.0, 14.0]):
        run_dir = tmp_path / f"bc{seed}"
        run_dir.mkdir()
        summary = {
            "algorithm": "bc",
            "expectile": 0.7,
            "beta": 3.0,
            "seed": seed,
            "dataset_id": "iql/pendulum/mixed-v0",
        }
        summary |= {"normalized_score": score, "best_normalized_score": score + 1}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    result = report(tmp_path / "bc0", tmp_path / "bc1", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    row = read_csv(tmp_path / "out" / "report.csv")[("bc", "", "")]
    assert (row["n_seeds"], float(row["final_mean"]), float(row["best_mean"])) == ("2", 12.0, 13.0)
    assert not (tmp_path / "out" / "heatmap-pendulum-mixed-v0.png").exists()  # no τ×β grid without IQL runs

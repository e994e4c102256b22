"""What ``python -m iql.report`` claims, on run dirs written as launch.py writes them (no training): rliable's own
intervals, a winner only where intervals separate, runs that failed at start-up apart, searches as scatters."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import REPO

from iql.report.table import ConfigResult

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
    reward_transform: str = "none",
    actor_dropout: float = 0.0,
) -> Path:
    """A run dir as launch.py leaves it: .hydra/config.yaml always; metrics.jsonl and summary.json when it trained
    (``score`` not None); error.txt when it failed."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "algorithm": {"name": algorithm, "expectile": expectile, "beta": beta},
        "dataset": {"id": dataset, "reward_transform": reward_transform},
        "network": {"actor_dropout": actor_dropout},
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
    assert "-cn seeds algorithm.expectile=<τ> algorithm.beta=<β> 'seed=range(2,7)'" in markdown  # unused seeds
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


@pytest.mark.parametrize(
    "args",
    [
        ["--vmin", "50", "--vmax", "10"],
        ["--reps", "0"],
        ["--seed", "-3"],
        ["--default", "0.9"],
        ["--default", "1.5,10"],
        ["--default", "0.9,-1"],
    ],
)
def test_bad_report_options_fail_with_one_message(tmp_path: Path, args: list[str]) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0]})
    result = subprocess.run(
        [sys.executable, "-m", "iql.report", str(sweep), *args], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert args[1] in result.stderr and "pass" in result.stderr


def results_of(sweep: Path) -> list[ConfigResult]:
    """The report's rows of the runs under ``sweep``, as build_report aggregates them."""
    from iql.report.runs import RunRecord, find_run_dirs, read_run
    from iql.report.table import aggregate

    records = [read_run(run_dir) for run_dir in find_run_dirs([sweep])]
    return aggregate([r for r in records if isinstance(r, RunRecord) and not r.failed_at_start], REPS, 0)


def test_fixed_colour_range_sets_the_colour_limits(tmp_path: Path) -> None:
    from iql.report.figures import heatmap_figure, heatmap_png
    from iql.report.search import scatter_figure

    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0], (0.9, 3.0): [51.0, 53.0]})
    result = report(sweep, "--vmin", "0", "--vmax", "100")
    assert result.returncode == 0, result.stderr
    assert (sweep / "heatmap-pendulum-mixed-v0.png").read_bytes()[:4] == b"\x89PNG"

    results = results_of(sweep)
    figures = {
        "fixed": heatmap_figure(results, None, 0.0, 100.0),
        "data": heatmap_figure(results),
        "low end above the data": heatmap_figure(results, None, 60.0, None),
    }
    limits = {name: figure.axes[0].images[0].get_clim() for name, figure in figures.items() if figure is not None}
    # a fixed end is kept as given; the free end never crosses it (an inverted scale would read backwards)
    assert limits == {"fixed": (0.0, 100.0), "data": (51.0, 52.0), "low end above the data": (60.0, 61.0)}
    assert (heatmap_png(results, None, 0.0, 100.0) or b"")[:4] == b"\x89PNG"
    scatter = scatter_figure(results, [], 0.0, 100.0)
    assert scatter is not None and scatter.axes[0].collections[0].get_clim() == (0.0, 100.0)


def test_bc_is_a_horizontal_baseline_line_in_every_curves_panel(tmp_path: Path) -> None:
    from iql.report.figures import curves_figure

    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0], (0.9, 3.0): [55.0, 57.0]})
    for seed, score in enumerate([10.0, 14.0]):
        fake_run(sweep / f"bc{seed}", seed=seed, score=score, algorithm="bc")
    figure = curves_figure(results_of(sweep))
    assert figure is not None and len(figure.axes) == 2  # a panel per τ
    for axes in figure.axes:
        baselines = [line for line in axes.get_lines() if str(line.get_label()).startswith("BC")]
        assert len(baselines) == 1, "BC must be one line per panel"
        (line,) = baselines
        assert np.asarray(line.get_ydata()).tolist() == [12.0, 12.0], "at BC's mean final score"
        assert np.asarray(line.get_xdata()).tolist() == [0, 1] and line.get_transform() == axes.get_yaxis_transform(), (
            "across the panel's whole width (axes coordinates), not at a step"
        )
        assert line.get_linestyle() == "--" and line.get_marker() in ("None", "", None), "a line, not a dot"
        assert "BC final 12.0 ± 2.8 (n=2)" in str(line.get_label())


def test_probability_of_improvement_over_bc_is_a_number_in_the_report(tmp_path: Path) -> None:
    from rliable import metrics

    best, bc = [80.0, 70.0, 75.0], [72.0, 60.0, 65.0]
    sweep = fake_sweep(tmp_path / "sweep", {(0.9, 3.0): best, (0.7, 3.0): [50.0, 52.0, 51.0]})
    for seed, score in enumerate(bc):
        fake_run(sweep / f"bc{seed}", seed=seed, score=score, algorithm="bc")
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    found = re.search(r"P\(iql τ=0\.9 β=3 > bc\) = (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\]", markdown)
    assert found, markdown
    point, low, high = map(float, found.groups())
    expected = metrics.probability_of_improvement(np.array(best).reshape(-1, 1), np.array(bc).reshape(-1, 1))
    assert point == round(float(expected), 2) == 0.89  # 8 of the 9 pairs of runs
    assert low <= point <= high


# the three domains' saved-config signals → the paper's default (τ, β) and the report's wording
DOMAINS: dict[str, tuple[dict[str, Any], str, str]] = {
    "antmaze": ({"reward_transform": "antmaze"}, "τ=0.9 β=10", "the paper's AntMaze (goal-reaching) default"),
    "kitchen": ({"actor_dropout": 0.1}, "τ=0.7 β=0.5", "the paper's Kitchen/Adroit default"),
    "locomotion": ({"reward_transform": "locomotion"}, "τ=0.7 β=3", "the paper's locomotion default"),
}
PAIRS = {(0.9, 10.0): [60.0, 62.0, 61.0], (0.7, 0.5): [50.0, 52.0, 51.0], (0.7, 3.0): [40.0, 42.0, 41.0]}


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_best_is_compared_with_the_papers_default_for_the_runs_domain(tmp_path: Path, domain: str) -> None:
    signals, default, why = DOMAINS[domain]
    sweep = fake_sweep(tmp_path / "sweep", {(0.8, 1.0): [80.0, 82.0, 81.0], **PAIRS}, **signals)
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert f"- Default: {default}, {why}" in markdown
    assert f"P(iql τ=0.8 β=1 > iql {default} (the default)) = 1.00" in markdown
    assert markdown.count("(the default)") == 1, "only the domain's default is the default"
    assert f"default {default} ({why}" in result.stdout


def test_default_named_on_the_command_line(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.8, 1.0): [80.0, 82.0, 81.0], **PAIRS}, reward_transform="antmaze")
    result = report(sweep, "--default", "0.7,3")
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert "- Default: τ=0.7 β=3, named with --default." in markdown
    assert "P(iql τ=0.8 β=1 > iql τ=0.7 β=3 (the default))" in markdown and "τ=0.9 β=10 (the default)" not in markdown

    result = report(sweep, "--default", "0.6,2")
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert "- Default: τ=0.6 β=2, named with --default; no finished run at it, so P(best > default) is not" in markdown
    assert "(the default)" not in markdown


def test_no_default_where_the_runs_domains_disagree(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", {(0.8, 1.0): [80.0, 82.0, 81.0], (0.7, 3.0): [40.0, 42.0, 41.0]})
    fake_sweep(tmp_path / "sweep" / "maze", {(0.9, 10.0): [60.0, 62.0, 61.0]}, reward_transform="antmaze")
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert (
        "- No default compared with: the runs' configs point to different paper defaults (τ=0.7 β=3, τ=0.9 β=10); "
        "name the one to compare with: --default τ,β." in markdown
    )
    assert "(the default)" not in markdown


@pytest.mark.parametrize(
    "preset",
    [f"experiment={p.stem}" for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))]
    + [f"dataset={p.stem}" for p in sorted((REPO / "conf" / "dataset").glob("*.yaml"))],
)
def test_paper_default_is_the_presets_own(tmp_path: Path, preset: str) -> None:
    """Every preset's saved config leads the report to the (τ, β) that preset trains with."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from iql.config import RunConfig
    from iql.report.runs import RunRecord, read_run
    from iql.report.verdict import paper_default

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[preset])
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))  # as Hydra saves it for a run
    record = read_run(tmp_path)
    assert isinstance(record, RunRecord)
    default = paper_default(record)
    assert (default.expectile, default.beta) == (cfg.algorithm.expectile, cfg.algorithm.beta)


def test_a_trial_seeded_by_its_job_number_keeps_that_seed(tmp_path: Path) -> None:
    """tau_beta_optuna's ``seed: ${hydra:job.num}`` stays unresolved in .hydra/config.yaml: a trial that failed at
    start-up is listed with its job's number as its seed, not as unreadable."""
    sweep = fake_sweep(tmp_path / "sweep", {(0.7, 3.0): [50.0, 52.0]})
    run_dir = fake_run(sweep / "7", seed=0, score=None, expectile=0.9, error="train.steps=-1 is invalid")
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config | {"seed": "${hydra:job.num}"}))
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": 7}}}))
    result = report(sweep)
    assert result.returncode == 0, result.stderr
    markdown = (sweep / "report.md").read_text()
    assert "3 run dirs, 2 finished, 0 incomplete, 1 failed at start-up, 0 unreadable" in markdown
    assert "| `7` | iql τ=0.9 β=3 | 7 | train.steps=-1 is invalid |" in markdown


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

"""Build the report of a sweep (or any set of runs): read the runs, aggregate, compare, write report.csv, report.md
and PNGs.

    sweep = Path("multirun/2026-11-24/16-58-29")
    report = build_report([sweep], out_dir=sweep)

Every file is written atomically (temporary sibling + rename), so a reader never sees half a report.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from iql.checkpoint import atomic_write_bytes
from iql.errors import ReportError
from iql.report.figures import METRIC_LABELS, curves_png, heatmap_png, intervals_png
from iql.report.runs import RunRecord, UnreadableRun, find_run_dirs, read_run
from iql.report.search import scatter_png, top_trials
from iql.report.stats import CONFIDENCE, DEFAULT_REPS, DEFAULT_SEED
from iql.report.table import ConfigResult, aggregate, format_mean_std, to_csv, to_markdown
from iql.report.verdict import Aggregate, Comparison, across_datasets, compare

CSV_FILE = "report.csv"
MARKDOWN_FILE = "report.md"


@dataclass
class Report:
    """What a report found and the files it wrote (PNG paths per dataset id)."""

    out_dir: Path
    sources: list[Path]
    runs: list[RunRecord]
    unreadable: list[UnreadableRun]
    results: list[ConfigResult]
    csv_path: Path
    markdown_path: Path
    reps: int = DEFAULT_REPS
    seed: int = DEFAULT_SEED
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # per dataset id
    aggregates: list[Aggregate] = field(default_factory=list)  # across datasets
    aggregate_verdict: str | None = None
    heatmaps: dict[str, Path] = field(default_factory=dict)
    scatters: dict[str, Path] = field(default_factory=dict)
    curves: dict[str, Path] = field(default_factory=dict)
    intervals: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunRecord]:
        """Runs that logged no step (failed at start-up, or not started): listed apart, in no row."""
        return [run for run in self.runs if run.failed_at_start]

    @property
    def incomplete(self) -> list[RunRecord]:
        """Runs that trained but have not finished (no summary.json yet)."""
        return [run for run in self.runs if not run.finished and not run.failed_at_start]

    @property
    def sweeps(self) -> list[str]:
        return sorted({run.sweep for run in self.runs if run.sweep})

    @property
    def by_dataset(self) -> dict[str, list[ConfigResult]]:
        """The results grouped by dataset id, in table order."""
        grouped: dict[str, list[ConfigResult]] = defaultdict(list)
        for result in self.results:
            grouped[result.key.dataset_id].append(result)
        return dict(grouped)

    @property
    def files(self) -> list[Path]:
        figures = (self.heatmaps, self.scatters, self.intervals, self.curves)
        return [self.markdown_path, self.csv_path, *(path for kind in figures for path in kind.values())]


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when below it, else absolute."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path.resolve())


def _write(path: Path, payload: bytes) -> None:
    try:
        atomic_write_bytes(path, lambda handle: handle.write(payload))
    except OSError as error:
        raise ReportError(
            f"Cannot write {path} ({error.strerror}). Choose a folder you can write to with --out DIR."
        ) from error


def _figure(lines: list[str], paths: dict[str, Path], dataset_id: str, alt: str) -> None:
    if dataset_id in paths:
        lines.append(f"![{alt}]({paths[dataset_id].name})\n")


def _dataset_section(report: Report, comparison: Comparison) -> list[str]:
    results, dataset_id = comparison.results, comparison.dataset_id
    metric = METRIC_LABELS.get(results[0].metric, results[0].metric)
    lines = ["", f"## {results[0].key.dataset_name} (`{dataset_id}`), {metric}", ""]
    if comparison.winner is not None:
        winner = comparison.winner
        lines.append(
            f"**Winner: {winner.key.label}**, final {metric} {format_mean_std(*winner.final)} (n={len(winner.seeds)}): "
            f"{comparison.reason}."
        )
    else:
        lines.append(f"**No winner named**: {comparison.reason}.")
    top = [] if comparison.grid else top_trials(results)
    if top:
        ranked = "; ".join(
            f"#{rank} {r.key.label}: {format_mean_std(*r.final)} (n={len(r.seeds)})" for rank, r in enumerate(top, 1)
        )
        fresh = 1 + max(run.seed for run in report.runs if run.key.dataset_id == dataset_id)  # seeds no trial used
        lines += [
            "",
            f"Search (not a grid), best trials by final {metric}: {ranked}. Ranked first is not shown to be better "
            "(the best of many noisy trials is flattered by its luck): rerun the best with repeats on seeds the "
            f"search did not use (`python launch.py -cd sweeps -cn seeds algorithm.expectile=<τ> "
            f"algorithm.beta=<β> 'seed=range({fresh},{fresh + 5})'`) and compare those.",
        ]
    if comparison.default_note:
        lines.append(f"- {comparison.default_note}")
    lines += [f"- {improvement.text}" for improvement in comparison.improvements]
    lines += [f"- Warning: {warning}" for warning in comparison.warnings]
    lines += ["", to_markdown(results, comparison.winner)]
    if comparison.grid:
        _figure(lines, report.heatmaps, dataset_id, f"τ×β heatmap of the final {metric}")
    else:
        _figure(lines, report.scatters, dataset_id, f"τ–β scatter of the final {metric}")
    _figure(lines, report.intervals, dataset_id, "IQM with 95% intervals")
    _figure(lines, report.curves, dataset_id, "learning curves")
    return lines


def _markdown(report: Report) -> str:
    out = report.out_dir
    finished = sum(1 for run in report.runs if run.finished)
    sources = ", ".join(f"`{_shown(path, out) if path != out else '.'}`" for path in report.sources)
    lines = [
        "# Run report",
        "",
        f"Runs from {sources}" + (f" (sweep {', '.join(report.sweeps)})" if report.sweeps else "") + ": "
        f"{len(report.runs) + len(report.unreadable)} run dirs, {finished} finished, {len(report.incomplete)} "
        f"incomplete, {len(report.failed)} failed at start-up, {len(report.unreadable)} unreadable.",
        "",
        "Final score: the last evaluation of each run; best score: its best evaluation; mean ± sample standard "
        "deviation (n − 1) over the finished seeds of a configuration. IQM (interquartile mean: the mean of the "
        f"middle 50% of seeds) and mean come with {CONFIDENCE:.0%} stratified-bootstrap confidence intervals from "
        f"rliable ({report.reps} resamples, bootstrap seed {report.seed}); a configuration needs 2 finished seeds for "
        "an interval. A winner is named only when the lower end of the highest IQM's interval lies above the upper "
        "end of every other configuration's interval; otherwise the report says there is no evidence of a "
        "difference. Incomplete runs are not in the numbers but are in the learning curves. The same numbers, "
        f"unrounded, are in `{CSV_FILE}`.",
    ]
    for comparison in report.comparisons.values():
        lines += _dataset_section(report, comparison)
    if report.aggregates or report.aggregate_verdict:
        lines += ["", "## Across datasets", ""]
        if report.aggregates:
            lines += [f"IQM of the final score over seeds × datasets: {report.aggregate_verdict}.", ""]
            lines += [
                "| configuration | IQM [95% CI] | mean [95% CI] | seeds on every dataset |",
                "|---|---:|---:|---|",
            ]
            for agg in report.aggregates:
                seeds = ", ".join(map(str, agg.seeds))
                lines.append(f"| {agg.label} | {agg.stats.iqm.format()} | {agg.stats.mean.format()} | {seeds} |")
        else:
            lines.append(f"{str(report.aggregate_verdict).capitalize()}.")
    if report.failed:
        lines += [
            "",
            "## Failed at start-up (no step logged; in no row)",
            "",
            "| run dir | configuration | seed | error |",
        ]
        lines.append("|---|---|---:|---|")
        for run in report.failed:
            error = (run.error or "no error recorded: not started yet, or killed before its first step").replace(
                "|", "/"
            )
            lines.append(f"| `{_shown(run.run_dir, out)}` | {run.key.label} | {run.seed} | {error} |")
    if report.incomplete:
        lines += [
            "",
            "## Incomplete runs (no summary.json; a run that failed shows its error)",
            "",
            "| run dir | configuration | seed | state |",
        ]
        lines.append("|---|---|---:|---|")
        for run in report.incomplete:
            state = run.progress + (f"; error: {run.error}" if run.error else "")
            lines.append(f"| `{_shown(run.run_dir, out)}` | {run.key.label} | {run.seed} | {state} |")
    if report.unreadable:
        lines += ["", "## Unreadable run dirs", ""]
        lines += [f"- `{_shown(bad.run_dir, out)}`: {bad.reason}" for bad in report.unreadable]
    return "\n".join(lines).rstrip() + "\n"


def build_report(
    paths: list[Path],
    out_dir: Path,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    vmin: float | None = None,
    vmax: float | None = None,
    default: tuple[float, float] | None = None,
) -> Report:
    """Read every run under ``paths`` and write ``report.md``, ``report.csv`` and per dataset ``heatmap-`` (a grid)
    or ``scatter-`` (a search), ``intervals-`` and ``curves-<dataset>.png`` into ``out_dir`` (each file
    atomically). Intervals use ``reps`` bootstrap resamples drawn with ``seed``; ``vmin``/``vmax`` fix the colour
    range of the heatmap and scatter; ``default`` is the (τ, β) the best is compared with (else the paper's for the
    runs' domain). Raises ``ReportError`` when there is no run or an argument is out of range."""
    if default is not None and not (0 < default[0] < 1 and 0 <= default[1] < math.inf):
        tau, beta = default
        raise ReportError(
            f"--default {tau:g},{beta:g} is not an IQL (τ, β): pass τ in (0, 1) and β ≥ 0, e.g. --default 0.9,10."
        )
    if reps < 1:
        raise ReportError(f"--reps {reps} is not a number of bootstrap resamples: pass --reps 2000 (or more).")
    if not 0 <= seed < 2**32:
        raise ReportError(f"--seed {seed} is not a bootstrap seed: pass an integer from 0 to 2**32 - 1, e.g. --seed 0.")
    if vmin is not None and vmax is not None and vmin >= vmax:
        raise ReportError(f"--vmin {vmin} is not below --vmax {vmax}: pass a colour range low to high, e.g. 0 100.")
    sources = [Path(os.path.abspath(path)) for path in paths]
    out_dir = Path(os.path.abspath(out_dir))
    records = [read_run(run_dir) for run_dir in find_run_dirs(sources)]
    runs = [record for record in records if isinstance(record, RunRecord)]
    unreadable = [record for record in records if isinstance(record, UnreadableRun)]
    if not runs:
        reasons = "; ".join(f"{bad.run_dir}: {bad.reason}" for bad in unreadable)
        raise ReportError(
            f"No readable run under {', '.join(map(str, paths))} ({reasons}). A run needs its summary.json or the "
            ".hydra/config.yaml Hydra writes when it starts: pass the sweep dir or run dirs launch.py created."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(
            f"Cannot create {out_dir} ({error.strerror}). Pass --out DIR with a writable folder."
        ) from error
    report = Report(
        out_dir=out_dir,
        sources=sources,
        runs=runs,
        unreadable=unreadable,
        results=aggregate([run for run in runs if not run.failed_at_start], reps, seed),
        csv_path=out_dir / CSV_FILE,
        markdown_path=out_dir / MARKDOWN_FILE,
        reps=reps,
        seed=seed,
    )
    for dataset_id, results in report.by_dataset.items():
        dataset_runs = [run for run in runs if run.key.dataset_id == dataset_id]
        comparison = compare(dataset_id, results, dataset_runs, reps, seed, default)
        report.comparisons[dataset_id] = comparison
        failed = [run for run in report.failed if run.key.dataset_id == dataset_id]
        figures = {
            "intervals": (report.intervals, intervals_png(results)),
            "curves": (report.curves, curves_png(results, None if comparison.grid else top_trials(results, 5))),
        }
        if comparison.grid:
            figures["heatmap"] = (report.heatmaps, heatmap_png(results, comparison.winner, vmin, vmax))
        else:
            figures["scatter"] = (report.scatters, scatter_png(results, failed, vmin, vmax))
        for kind, (written, png) in figures.items():
            if png is not None:
                written[dataset_id] = out_dir / f"{kind}-{results[0].key.dataset_name}.png"
                _write(written[dataset_id], png)
    report.aggregates, report.aggregate_verdict = across_datasets(report.by_dataset, reps, seed)
    _write(report.csv_path, to_csv(report.results).encode())
    _write(report.markdown_path, _markdown(report).encode())
    return report

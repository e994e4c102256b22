"""Build the report of a sweep (or any set of runs): read the runs, aggregate, write report.csv, report.md and PNGs.

    sweep = Path("multirun/2026-11-24/16-58-29")
    report = build_report([sweep], out_dir=sweep)

Every file is written atomically (temporary sibling + rename), so a reader never sees half a report.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from iql.checkpoint import atomic_write_bytes
from iql.errors import ReportError
from iql.report.figures import METRIC_LABELS, curves_png, heatmap_png
from iql.report.runs import RunRecord, UnreadableRun, find_run_dirs, read_run
from iql.report.table import ConfigResult, aggregate, best_result, format_mean_std, to_csv, to_markdown

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
    heatmaps: dict[str, Path] = field(default_factory=dict)
    curves: dict[str, Path] = field(default_factory=dict)

    @property
    def incomplete(self) -> list[RunRecord]:
        return [run for run in self.runs if not run.finished]

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
        return [self.markdown_path, self.csv_path, *self.heatmaps.values(), *self.curves.values()]


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


def _markdown(report: Report) -> str:
    out, finished = report.out_dir, len(report.runs) - len(report.incomplete)
    sources = ", ".join(f"`{_shown(path, out) if path != out else '.'}`" for path in report.sources)
    lines = [
        "# Run report",
        "",
        f"Runs from {sources}" + (f" (sweep {', '.join(report.sweeps)})" if report.sweeps else "") + ": "
        f"{len(report.runs) + len(report.unreadable)} run dirs, {finished} finished, {len(report.incomplete)} "
        f"incomplete, {len(report.unreadable)} unreadable.",
        "",
        "Final score: the last evaluation of each run; best score: its best evaluation. Both are mean ± sample "
        "standard deviation (n − 1) over the finished seeds of a configuration; incomplete runs are not in the "
        f"means but are in the learning curves. The same numbers, unrounded, are in `{CSV_FILE}`.",
    ]
    for dataset_id, results in report.by_dataset.items():
        dataset_name = results[0].key.dataset_name
        winner = best_result(results)
        metric = METRIC_LABELS.get(results[0].metric, results[0].metric)
        lines += ["", f"## {dataset_name} (`{dataset_id}`), {metric}", ""]
        if winner is not None:
            lines += [
                f"Best: **{winner.key.label}**, final {metric} {format_mean_std(*winner.final)} "
                f"(n={len(winner.seeds)}).",
                "",
            ]
        lines.append(to_markdown(results, winner))
        if dataset_id in report.heatmaps:
            lines.append(f"![τ×β heatmap of the final {metric}]({report.heatmaps[dataset_id].name})\n")
        if dataset_id in report.curves:
            lines.append(f"![learning curves]({report.curves[dataset_id].name})\n")
        for result in results:
            if result.pooled_differences:
                lines.append(
                    f"Note: the runs pooled as {result.key.label} differ in {', '.join(result.pooled_differences)}; "
                    "their mean mixes those settings.\n"
                )
    if report.incomplete:
        lines += ["## Incomplete runs (no summary.json)", "", "| run dir | configuration | seed | state |"]
        lines.append("|---|---|---:|---|")
        for run in report.incomplete:
            lines.append(f"| `{_shown(run.run_dir, out)}` | {run.key.label} | {run.seed} | {run.progress} |")
        lines.append("")
    if report.unreadable:
        lines += ["## Unreadable run dirs", ""]
        lines += [f"- `{_shown(bad.run_dir, out)}`: {bad.reason}" for bad in report.unreadable]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def build_report(paths: list[Path], out_dir: Path) -> Report:
    """Read every run under ``paths`` and write ``report.md``, ``report.csv``, ``heatmap-<dataset>.png`` and
    ``curves-<dataset>.png`` into ``out_dir`` (each file atomically). Raises ``ReportError`` when there is no run."""
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
        results=aggregate(runs),
        csv_path=out_dir / CSV_FILE,
        markdown_path=out_dir / MARKDOWN_FILE,
    )
    for dataset_id, results in report.by_dataset.items():
        name = results[0].key.dataset_name
        for kind, render, written in (("heatmap", heatmap_png, report.heatmaps), ("curves", curves_png, report.curves)):
            png = render(results)
            if png is not None:
                written[dataset_id] = out_dir / f"{kind}-{name}.png"
                _write(written[dataset_id], png)
    _write(report.csv_path, to_csv(report.results).encode())
    _write(report.markdown_path, _markdown(report).encode())
    return report

"""Log a built report to W&B: one run with ``job_type="report"`` holding the table and the figures.

Online with an API key (or ``WANDB_MODE=online``), offline otherwise, like training runs: an offline report run is
written under ``<out dir>/wandb/`` and uploads with ``wandb sync``.
"""

from __future__ import annotations

from pathlib import Path

from iql.config import LoggerConfig
from iql.errors import ReportError
from iql.logging import init_wandb_run, resolve_wandb_mode
from iql.report.build import Report
from iql.report.table import CSV_COLUMNS, table_rows

DEFAULT_PROJECT = "iql"


def report_project(report: Report) -> str:
    """The runs' W&B project when they agree on one, else ``iql``."""
    projects = {run.project for run in report.runs if run.project}
    return projects.pop() if len(projects) == 1 else DEFAULT_PROJECT


def log_report(report: Report, project: str | None = None, entity: str | None = None) -> str:
    """Log ``report`` to a new W&B run and return where it went (the run's URL, or its offline folder)."""
    mode = resolve_wandb_mode(LoggerConfig())
    if mode == "disabled":
        raise ReportError(
            f"--wandb was given but WANDB_MODE disables W&B. Unset WANDB_MODE (or set it to offline); the local "
            f"report is in {report.markdown_path}."
        )
    datasets = sorted({result.key.dataset_name for result in report.results})
    run = init_wandb_run(
        mode,
        project=project or report_project(report),
        entity=entity,
        job_type="report",
        name="report " + (", ".join(report.sweeps) or report.out_dir.name),
        tags=sorted({"report", *report.sweeps, *datasets}),
        config={"sources": [str(path) for path in report.sources], "sweeps": report.sweeps, "datasets": datasets},
        dir=str(report.out_dir),
    )
    if run is None:
        raise ReportError(
            f"W&B could not start a report run (see the warnings above). The local report is complete in "
            f"{report.markdown_path}; retry with WANDB_MODE=offline and upload later with `wandb sync`."
        )
    import wandb

    try:
        figures = (report.heatmaps, report.scatters, report.intervals, report.curves)
        images = {path.stem.replace("-", "/", 1): path for kind in figures for path in kind.values()}
        run.log(
            {
                "table": wandb.Table(columns=list(CSV_COLUMNS), data=table_rows(report.results)),
                **{key: wandb.Image(str(path)) for key, path in images.items()},
            }
        )
        for comparison in report.comparisons.values():
            name = comparison.results[0].key.dataset_name
            winner = comparison.winner
            run.summary[f"winner/{name}"] = winner.key.label if winner is not None else "none"
            run.summary[f"verdict/{name}"] = comparison.reason
            run.summary[f"default/{name}"] = comparison.default.label if comparison.default is not None else "none"
            if winner is not None:
                run.summary[f"winner_final_mean/{name}"] = winner.final[0]
        return str(run.url or Path(run.dir).parent)
    finally:
        run.finish()

"""Compare runs: a sweep's table, τ×β heatmap and learning curves, from its run dirs (``python -m iql.report``).

runs.py reads run dirs, table.py aggregates seeds, figures.py draws, build.py writes the report, wandb_log.py logs it.
"""

from iql.report.build import Report, build_report

__all__ = ["Report", "build_report"]

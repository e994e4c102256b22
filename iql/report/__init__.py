"""Compare runs: a sweep's table with bootstrap intervals, a verdict that names a winner only where the intervals
separate it, and its figures, from its run dirs (``python -m iql.report``).

runs.py reads run dirs, table.py aggregates seeds, stats.py computes intervals through rliable, verdict.py decides
what may be claimed, figures.py and search.py (grid or search) draw, build.py writes the report, wandb_log.py logs it.
"""

from iql.report.build import Report, build_report

__all__ = ["Report", "build_report"]

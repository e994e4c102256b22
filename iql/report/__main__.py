"""Compare runs: mean ± std and IQM with 95% bootstrap intervals per (τ, β); a winner only where intervals separate.

Also a τ×β heatmap (a grid) or τ–β scatter (a search), an interval figure and learning curves.

python -m iql.report multirun/2026-11-24/16-58-29            # a sweep dir: writes report.md, report.csv, PNGs there
python -m iql.report outputs/a outputs/b --out reports/ab    # some run dirs, report elsewhere
python -m iql.report multirun/2026-11-24/16-58-29 --wandb    # also log the table and figures to W&B
python -m iql.report multirun/2026-11-24/16-58-29 --vmin 0 --vmax 100 --reps 10000   # fixed colours, finer CIs
python -m iql.report multirun/2026-11-24/16-58-29 --default 0.9,10   # compare the best with τ 0.9, β 10
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iql.errors import IQLError, ReportError


def _default_out(paths: list[Path]) -> Path:
    """The one path given (a sweep dir), else the folder that holds all the given run dirs."""
    if len(paths) == 1:
        return paths[0]
    return Path(os.path.commonpath([os.path.abspath(path) for path in paths]))


def parse_default(text: str) -> tuple[float, float]:
    """``0.9,10`` → ``(0.9, 10.0)``; raises ``ReportError`` for anything but two numbers."""
    try:
        tau, beta = (float(part) for part in text.split(","))
    except ValueError:
        raise ReportError(
            f"--default {text} is not a (τ, β) pair: pass τ,β without spaces, e.g. --default 0.9,10."
        ) from None
    return tau, beta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iql.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="a sweep dir, or run dirs")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the sweep dir)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figures to a W&B report run")
    parser.add_argument("--project", help="W&B project (default: the runs' logger.project, else iql)")
    parser.add_argument("--entity", help="W&B entity (default: yours)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0): same seed, same CIs")
    parser.add_argument("--vmin", type=float, help="fixed low end of the heatmap/scatter colour scale")
    parser.add_argument("--vmax", type=float, help="fixed high end of the heatmap/scatter colour scale")
    parser.add_argument(
        "--default",
        metavar="τ,β",
        help="the (τ, β) the best is compared with (default: the paper's for the runs' domain, from their config: "
        "AntMaze 0.9,10; Kitchen/Adroit 0.7,0.5; else 0.7,3)",
    )
    args = parser.parse_args(argv)

    from iql.report.build import build_report
    from iql.report.table import format_mean_std

    try:
        out = args.out or _default_out(args.paths)
        default = None if args.default is None else parse_default(args.default)
        report = build_report(args.paths, out, args.reps, args.seed, args.vmin, args.vmax, default)
        finished = sum(1 for run in report.runs if run.finished)
        print(f"{len(report.runs)} readable run dirs: {finished} finished, {len(report.incomplete)} incomplete", end="")
        print(f", {len(report.failed)} failed at start-up", end="")
        print(f"; {len(report.unreadable)} unreadable" if report.unreadable else "")
        for run in report.failed:
            print(f"  failed: {run.run_dir} ({run.key.label}, seed {run.seed}): {run.error or 'no step logged'}")
        for dataset_id, comparison in report.comparisons.items():
            if comparison.winner is not None:
                winner = comparison.winner
                print(f"  {dataset_id}: winner {winner.key.label}, final {format_mean_std(*winner.final)}")
            else:
                print(f"  {dataset_id}: no winner named: {comparison.reason}")
            if comparison.default is not None:
                print(f"  {dataset_id}: default {comparison.default.label} ({comparison.default.why})")
        for path in report.files:
            print(f"wrote {path}")
        if args.wandb:
            from iql.report.wandb_log import log_report

            print(f"W&B report run: {log_report(report, args.project, args.entity)}")
    except IQLError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

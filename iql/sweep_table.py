"""The table a multirun ends with: one line per job (overrides, score, steps/s, status), failed jobs' logs named.

    table, unfinished = sweep_table(Path("multirun/2026-11-25/10-00-00"))

Reads only what the jobs wrote (``.hydra/overrides.yaml``, ``summary.json``, ``error.txt``), so it works the same
for local, ``submitit_local`` and SLURM jobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from iql.errors import ERROR_FILE

SCORES = ("success_rate", "normalized_score", "return_mean")


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _score(summary: dict[str, Any]) -> str:
    names = [summary.get("score_of_record"), *SCORES]
    name = next((n for n in names if n and summary.get(n) is not None), None)
    if name is None:
        return "-"
    return f"{summary[name]:.1f} ({name.replace('_', ' ')})"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of a multirun (``<sweep dir>/<job number>``), in job order."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def sweep_table(sweep_dir: Path) -> tuple[str, int]:
    """The jobs of ``sweep_dir`` as an aligned text table, and how many did not finish."""
    jobs = job_dirs(sweep_dir) if sweep_dir.is_dir() else []
    overrides = {job: [str(o) for o in _read(job / ".hydra" / "overrides.yaml") or []] for job in jobs}
    shared = set.intersection(*(set(o) for o in overrides.values())) if overrides else set()
    rows, problems = [], []
    for job in jobs:
        summary = _read(job / "summary.json")
        varying = " ".join(o for o in overrides[job] if o not in shared) or "(the sweep's config)"
        if isinstance(summary, dict):
            steps_per_s = summary.get("steps_per_s")
            rate = f"{steps_per_s:.0f}" if isinstance(steps_per_s, float | int) else "-"
            rows.append((job.name, varying, _score(summary), rate, "done"))
            continue
        error = (job / ERROR_FILE).read_text().strip().splitlines() if (job / ERROR_FILE).exists() else []
        status = "failed" if error else "not finished"
        rows.append((job.name, varying, "-", "-", status))
        log = job / "launch.log"
        where = log if log.exists() else job
        slurm_logs = sweep_dir / ".submitit"
        extra = f" (SLURM logs: {slurm_logs})" if slurm_logs.is_dir() else ""
        problems.append(f"  job {job.name} {status}{': ' + error[0] if error else ''} — log: {where}{extra}")
    header = ("job", "overrides", "final score", "steps/s", "status")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"Multirun {sweep_dir}: {len(jobs)} job(s), {len(jobs) - len(problems)} done"]
    lines += [
        "  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if shared:
        lines.append(f"  every job: {' '.join(sorted(shared))}")
    lines += problems
    lines.append(f"Compare them: python -m iql.report {sweep_dir}")
    return "\n".join(lines), len(problems)

"""Sweeps on a real SLURM cluster (scripts/start-local-slurm.sh): submission, completion, requeue and resume.

Skipped where no cluster answers; in CI (CI=true) a missing cluster is a failure, not a skip.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, launch, sweep_summaries

TINY = [
    "network.hidden_dims=[32,32]",
    "train.batch_size=64",
    "eval.episodes=2",
    "logger=none",
    "hardware.slurm.cpus_per_task=1",
    "hardware.slurm.mem_gb=1",
    "hardware.slurm.time_min=15",
]
pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    up = (
        shutil.which("sinfo") is not None
        and subprocess.run(["scontrol", "ping"], capture_output=True, text=True).returncode == 0
    )
    if not up:
        message = "no SLURM cluster answers `scontrol ping`: run `bash scripts/start-local-slurm.sh` as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def submitted_jobs(sweep_dir: Path) -> list[str]:
    """SLURM ids of the jobs submitit made for a sweep: array tasks ``<array>_<task>``, or a single job id."""
    folders = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name[0].isdigit()]
    tasks = sorted(name for name in folders if "_" in name)
    return tasks or sorted(folders)


def final_slurm_states(job_ids: list[str], timeout: float = 60) -> dict[str, str]:
    """SLURM's record of each job once none is pending or running (results are pickled just before jobs end)."""
    deadline = time.time() + timeout
    while True:
        states = slurm_states(job_ids)
        unfinished = [j for j in job_ids if states.get(j) in (None, "PENDING", "RUNNING", "COMPLETING", "REQUEUED")]
        if not unfinished or time.time() > deadline:
            return states
        time.sleep(0.5)


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Current state of each job (array tasks as ``<array>_<task>``) from SLURM's accounting or completion log."""
    states: dict[str, str] = {}
    result = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)], capture_output=True, text=True
    )
    if result.returncode == 0:
        for line in result.stdout.splitlines():
            job, state = line.split("|")[:2]
            states[job] = state.split()[0]
        return states
    log = Path("/var/log/slurm/jobcomp.log")  # jobcomp/filetxt: one line per finished job
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        states[f"{fields.get('ArrayJobId')}_{fields.get('ArrayTaskId')}"] = fields["JobState"]
    return states


def run_and_interrupt(args: list[str], ready: Callable[[], bool], slurm_command: list[str], sweep_dir: Path) -> str:
    """Launch ``args`` (a one-job SLURM sweep into ``sweep_dir``), run ``slurm_command <job id>`` once ``ready()``,
    and wait for the launcher, which must succeed; returns the job id."""
    launcher = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while not ready():
        assert launcher.poll() is None and time.time() < deadline, "the job never got where it was to be interrupted"
        time.sleep(0.1)
    (job_id,) = submitted_jobs(sweep_dir)
    subprocess.run([*slurm_command, job_id], check=True)
    try:
        output, _ = launcher.communicate(timeout=420)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output[-3000:]
    return job_id


def test_tau_sweep_runs_as_slurm_jobs(tmp_path: Path, pendulum_dataset: str) -> None:
    # no -m: hardware=slurm submits by itself
    result = launch(
        "hardware=slurm",
        "algorithm.expectile=0.6,0.7,0.8",
        *TINY,
        "train.steps=200",
        f"hydra.sweep.dir={tmp_path}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stderr[result.stderr.index(f"Multirun {tmp_path}") :]  # the jobs' table, as after a local sweep
    assert "3 job(s), 3 done" in table and f"python -m iql.report {tmp_path}" in table
    assert table.count("(normalized score)") == 3
    summaries = sweep_summaries(tmp_path)
    assert [s["run_dir"] for s in summaries] == [str(tmp_path / str(i)) for i in range(3)]
    assert sorted(s["expectile"] for s in summaries) == [0.6, 0.7, 0.8]
    job_ids = [s["slurm_job_id"] for s in summaries]
    assert all(job_ids), "a run did not execute inside a SLURM job"
    assert all(s["threads"] == 1 for s in summaries), "threads must follow SLURM's cpus_per_task"
    submitted = submitted_jobs(tmp_path)
    assert len(submitted) == 3
    states = final_slurm_states(submitted)
    assert all(states.get(job) == "COMPLETED" for job in submitted), states


def test_requeued_job_resumes_from_its_checkpoint(tmp_path: Path, pendulum_dataset: str) -> None:
    args = [
        sys.executable,
        str(REPO / "launch.py"),
        "-m",
        "hardware=slurm",
        *TINY,
        # long enough that the job cannot finish within SLURM's grace period after the requeue's SIGTERM (which
        # submitit ignores) on a fast machine: 4000 steps took 4 s here, and the job completed instead of requeuing
        "train.steps=30000",
        "train.log_every=100",
        "train.eval_every=15000",
        "train.checkpoint_every=200",
        f"hydra.sweep.dir={tmp_path}",
    ]
    run_dir = tmp_path / "0"
    job_id = run_and_interrupt(args, (run_dir / "checkpoint.pt").exists, ["scontrol", "requeue"], tmp_path)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 30000
    assert summary["resumed_from_steps"], "the requeued job started over instead of resuming"
    assert 0 < summary["resumed_from_steps"][0] < 30000
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(100, 30001, 100)), "metrics.jsonl must hold every log step once, in order"
    assert final_slurm_states([job_id]).get(job_id) == "COMPLETED"


def test_preempted_finetuning_job_checkpoints_at_the_signal_and_resumes(tmp_path: Path, pendulum_dataset: str) -> None:
    """SLURM's pre-timeout signal (USR2) in the online phase: the run checkpoints at the step it is at (no
    checkpoint_every multiple: that is beyond the run's end), submitit requeues the job, and the requeued job
    resumes there and finishes with every online transition in the buffer once."""
    offline_steps, online_steps = 200, 4000
    args = [
        sys.executable,
        str(REPO / "launch.py"),
        "-m",
        "hardware=slurm",
        *TINY,
        "online=finetune",
        f"train.steps={offline_steps}",
        f"online.steps={online_steps}",
        "train.log_every=100",
        "train.eval_every=100000",
        "train.checkpoint_every=100000",
        f"hydra.sweep.dir={tmp_path}",
    ]
    metrics = tmp_path / "0" / "metrics.jsonl"

    def in_online_phase() -> bool:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return any(line.endswith("}") and json.loads(line)["step"] > offline_steps for line in lines)

    job_id = run_and_interrupt(args, in_online_phase, ["scancel", "--signal=USR2"], tmp_path)

    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    total = offline_steps + online_steps
    assert summary["steps"] == total
    assert len(summary["resumed_from_steps"]) == 1, "the job was not requeued by the signal, or more than once"
    assert offline_steps < summary["resumed_from_steps"][0] < total  # the step the signal stopped it at
    assert summary["online_env_steps"] == online_steps
    assert summary["online_buffer_size"] == 200 * 200 + online_steps  # pendulum-mixed: 200 episodes of 200 steps
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(100, total + 1, 100))
    assert final_slurm_states([job_id]).get(job_id) == "COMPLETED"


def test_optuna_search_runs_as_slurm_jobs_and_survives_a_failed_trial(tmp_path: Path, pendulum_dataset: str) -> None:
    """6 TPE trials in 2 batches of 3 array jobs; the first job to start is given an invalid train.steps (through its
    environment, as a bad node would), fails at start-up, and the study goes on; the report shows every trial."""
    import optuna

    sweep_dir, marker = tmp_path / "sweep", tmp_path / "failed-once"
    fail_once = f"mkdir {marker} 2>/dev/null && export IQL_TRIAL_STEPS=-1 || true"
    result = launch(
        "-cd",
        "sweeps",
        "-cn",
        "tau_beta_optuna",
        "hardware=slurm",
        *TINY,
        "train.steps=${oc.env:IQL_TRIAL_STEPS,200}",
        "train.eval_every=100",
        "train.log_every=100",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.sampler.n_startup_trials=3",
        f"hardware.slurm.setup=['{fail_once}']",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job_dirs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in job_dirs] == [str(i) for i in range(6)]
    failed = [p for p in job_dirs if not (p / "summary.json").exists()]
    assert len(failed) == 1 and "train.steps=-1 is invalid" in (failed[0] / "error.txt").read_text()
    summaries = sweep_summaries(sweep_dir)
    assert len(summaries) == 5 and all(s["slurm_job_id"] and s["steps"] == 200 for s in summaries)
    assert sorted(s["seed"] for s in summaries) == [int(p.name) for p in job_dirs if p not in failed], (
        "each trial runs its job number as seed"
    )

    study = optuna.load_study(study_name="tau_beta", storage=f"sqlite:///{sweep_dir}/optuna.db")
    states = sorted(trial.state.name for trial in study.trials)
    assert states == ["COMPLETE"] * 5 + ["FAIL"]
    assert {round(t.value, 9) for t in study.trials if t.value is not None} == {
        round(s["normalized_score"], 9) for s in summaries
    }, "each trial's value is its run's score of record"
    assert all(
        0.5 <= t.params["algorithm.expectile"] <= 0.95 and 0.3 <= t.params["algorithm.beta"] <= 30 for t in study.trials
    )

    report = subprocess.run(
        [sys.executable, "-m", "iql.report", str(sweep_dir), "--reps", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    with open(sweep_dir / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(float(row["expectile"]) for row in rows) == sorted(s["expectile"] for s in summaries)
    markdown = (sweep_dir / "report.md").read_text()
    assert "6 run dirs, 5 finished, 0 incomplete, 1 failed at start-up" in markdown
    assert f"| `{failed[0].name}` |" in markdown.split("## Failed at start-up", 1)[1]
    assert "**No winner named**" in markdown  # one seed per trial
    assert (sweep_dir / "scatter-pendulum-mixed-v0.png").exists()

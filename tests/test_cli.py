"""What a researcher sees at the terminal: override typos, Ctrl-C and SIGTERM, finished and extended runs, and the
table a multirun ends with — all through the real entry point."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_same_final_weights, launch

from iql.suggest import ALIASES, schema_keys, suggest_keys, suggest_options

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "logger=none", "hardware.threads=1"]


def assert_one_paragraph(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("algorithm.tau=0.9", ["algorithm.tau", "algorithm.expectile (τ"]),
        ("algorithm.temperature=3", ["algorithm.beta (β"]),
        ("+algorithm.tau=0.9", ["algorithm.tau", "algorithm.expectile"]),
        ("train.stpes=10", ["train.stpes", "train.steps"]),
        ("dataset=hopper-medium", ["dataset=hopper-medium", "Did you mean dataset=mujoco_hopper_medium"]),
        ("algorithm=iq", ["algorithm=iq", "algorithm=iql"]),
        ("network.hidden_dims=abc", ["network.hidden_dims=abc"]),
        ("algorithm.expectile=[0.5", ["Could not parse"]),
    ],
)
def test_override_typos_end_with_one_paragraph_and_a_suggestion(override: str, words: list[str]) -> None:
    assert_one_paragraph(launch(*TINY, "train.steps=1", override), *words)


def test_hydra_full_error_still_shows_the_trace() -> None:
    result = launch(*TINY, "train.steps=1", "algorithm.tau=0.9", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "algorithm.tau" in result.stderr


def test_suggestions() -> None:
    assert suggest_keys("tau") == ["algorithm.expectile"]
    assert suggest_keys("algorithm.expectil") == ["algorithm.expectile"]
    assert suggest_keys("hardware.slurm.partiton") == ["hardware.slurm.partition"]
    assert suggest_options("Hopper-Medium", ["hopper_medium", "hopper_expert"]) == ["hopper_medium"]
    assert suggest_options("zzz", ["hopper_medium"]) == []
    assert suggest_options("pointmaze-umaze", ["antmaze_umaze", "pointmaze_umaze_mixed"])[0] == "pointmaze_umaze_mixed"
    assert suggest_keys("network.critic_ensemble") == ["network.num_critics"]  # what other libraries call it


def test_every_alias_names_a_real_key() -> None:
    assert set(ALIASES.values()) <= set(schema_keys())


def start(*overrides: str, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_training(run_dir: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the run has logged a metrics row (it is in the training loop)."""
    deadline = time.monotonic() + timeout
    while not (run_dir / "metrics.jsonl").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_the_relaunch_matches(
    tmp_path: Path, pendulum_dataset: str, sig: signal.Signals
) -> None:
    # a constant actor lr: the relaunch below ends the run earlier than the interrupted attempt planned
    base = [*TINY, "algorithm.actor_schedule=constant", "train.log_every=10", "train.eval_every=100000"]
    run_dir = tmp_path / "stopped"
    process = start(*base, "train.steps=100000", "train.checkpoint_every=100000", run_dir=run_dir)
    wait_for_training(run_dir, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    stopped = torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"]
    assert 0 < stopped < 100000  # written at the step it stopped, not at a checkpoint_every multiple
    assert f"Stopped by {sig.name} at step {stopped} of 100000" in stderr
    assert f"hydra.run.dir={run_dir}" in stderr  # the resume command

    end = [*base, f"train.steps={stopped + 200}"]
    reference = tmp_path / "reference"
    assert launch(*end, run_dir=reference).returncode == 0
    resumed = launch(*end, run_dir=run_dir)
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stderr + resumed.stdout
    assert f"shortening {run_dir} from train.steps=100000" in said and "learning rate is constant" in said
    assert assert_same_final_weights(run_dir, reference) == stopped + 200


def test_a_finished_run_is_not_run_again_and_can_be_extended(tmp_path: Path, pendulum_dataset: str) -> None:
    args = [*TINY, "train.log_every=50", "train.eval_every=100"]
    assert launch(*args, "train.steps=100", run_dir=tmp_path).returncode == 0
    first = json.loads((tmp_path / "summary.json").read_text())

    again = launch(*args, "train.steps=100", run_dir=tmp_path)
    assert again.returncode == 0 and "complete at step 100: nothing to do" in again.stderr + again.stdout
    assert json.loads((tmp_path / "summary.json").read_text()) == first

    refused = launch(*args, "train.steps=100", "algorithm.beta=10", run_dir=tmp_path)
    assert_one_paragraph(refused, "algorithm.beta: 3.0 → 10.0")

    extended = launch(*args, "train.steps=200", run_dir=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert "cosine learning-rate schedule is stretched" in extended.stderr + extended.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 200 and summary["extended_from_steps"] == [100]
    rows = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [50, 100, 150, 200]


def test_a_multirun_ends_with_a_table_of_its_jobs(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(
        "-m", *TINY, "train.steps=50", "train.eval_every=50", "algorithm.beta=1,-1,3", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 2  # one job failed
    table = result.stderr[result.stderr.index(f"Multirun {tmp_path}") :]
    assert "3 job(s), 2 done" in table
    for job, beta in ((0, "1"), (1, "-1"), (2, "3")):
        assert any(line.split()[:2] == [str(job), f"algorithm.beta={beta}"] for line in table.splitlines()), table
    assert table.count("(normalized score)") == 2
    assert "job 1 failed: algorithm.beta=-1.0 is invalid" in table and str(tmp_path / "1" / "launch.log") in table
    assert f"python -m iql.report {tmp_path}" in table
    assert "Traceback" not in result.stderr


def test_a_run_finished_by_an_older_version_is_still_recognised(tmp_path: Path, pendulum_dataset: str) -> None:
    """Its summary.json predates ``score_of_record``: the final line falls back to the score it holds."""
    args = [*TINY, "train.steps=50", "train.eval_every=50"]
    assert launch(*args, run_dir=tmp_path).returncode == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    del summary["score_of_record"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    again = launch(*args, run_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "normalized score" in (tmp_path / "launch.log").read_text().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [["-cn", "seeds", "seed=1"], ["-cn", "tau_beta_optuna"]])
def test_a_stopped_job_of_a_ready_sweep_prints_a_resume_command_that_resumes_it(
    tmp_path: Path, pendulum_dataset: str, sweep: list[str]
) -> None:
    """A job of a ready sweep is composed from that sweep's config: its resume command says so (and runs it as one
    run, not as a new sweep), or the relaunch would be another configuration. tau_beta_optuna derives each trial's
    seed from its job number, which a single run does not have: the command names the seed."""
    base = [*TINY, "algorithm.actor_schedule=constant", "train.log_every=10", "train.eval_every=100000"]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "-cd", "sweeps", *sweep, *base, "train.steps=100000",
         f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    job_dir = tmp_path / "0"
    wait_for_training(job_dir, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    command = shlex.split(stderr.split("Resume with: ", 1)[1].splitlines()[0])
    assert command[:2] == ["python", "launch.py"] and "-cn" in command and "hydra.mode=RUN" in command
    assert f"hydra.run.dir={job_dir}" in command and ("seed=1" if "seeds" in sweep else "seed=0") in command
    stopped = int(torch.load(job_dir / "checkpoint.pt", weights_only=False)["step"])
    shorter = [f"train.steps={stopped + 50}" if arg == "train.steps=100000" else arg for arg in command[2:]]
    resumed = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *shorter], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {job_dir} from step {stopped}" in resumed.stderr + resumed.stdout
    assert json.loads((job_dir / "summary.json").read_text())["steps"] == stopped + 50

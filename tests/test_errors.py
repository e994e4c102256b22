"""Bad input through the real entry point: one clear paragraph, a non-zero exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import launch

TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "train.steps=10", "logger=none"]

CASES = [
    # (overrides, words the message must contain)
    (["algorithm.expectile=1.5"], ["algorithm.expectile=1.5", "(0, 1)"]),
    (["algorithm.expectile=0"], ["algorithm.expectile=0"]),
    (["algorithm.beta=-1"], ["algorithm.beta=-1", "≥ 0"]),
    (["algorithm.discount=0"], ["algorithm.discount=0", "(0, 1]"]),
    (["algorithm.discount=1.5"], ["algorithm.discount=1.5"]),
    (["train.steps=0"], ["train.steps=0"]),
    (["train.batch_size=0"], ["train.batch_size=0"]),
    (["train.batch_size=1000000"], ["train.batch_size=1000000", "larger than dataset"]),
    (["algorithm=nosuch"], ["nosuch", "algorithm"]),
    (["+algorithm.typo=1"], ["algorithm.typo"]),
    (["algorithm.typo=1"], ["typo"]),
    (["algorithm.expectile=abc"], ["algorithm.expectile", "abc"]),
    (["train.steps=many"], ["train.steps", "many"]),
    (["dataset.id=nowhere/missing-v0"], ["nowhere/missing-v0", "python -m iql.data build", "dataset.download=true"]),
    (["dataset.id=hopper-medium"], ["dataset.id='hopper-medium'", "namespace/name-vN"]),
    (["dataset.id=test/nan-v0"], ["test/nan-v0", "non-finite"]),
    (["dataset.id=test/empty-v0"], ["test/empty-v0", "no transitions"]),
    (["dataset.eval_env=MountainCarContinuous-v0"], ["MountainCarContinuous-v0", "action bounds", "dataset.eval_env"]),
    (["dataset.eval_env=InvertedPendulum-v5"], ["InvertedPendulum-v5", "dataset.eval_env"]),
    (["dataset.eval_env=NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
    (["hardware.device=cuda"], ["hardware.device=cuda", "CUDA is not available"]),
    (["hardware.device=tpu"], ["hardware.device='tpu'"]),
    (["seed=-1"], ["seed=-1", "0 ≤ seed < 2**32"]),
    (["seed=4294967296"], ["seed=4294967296", "0 ≤ seed < 2**32"]),
    (["eval.score=best"], ["eval.score='best'", "success_rate"]),
    (["eval.score=success_rate"], ["eval.score=success_rate", "reports no info['success']"]),
    (["hardware.matmul_precision=tf32"], ["hardware.matmul_precision='tf32'", "highest"]),
    (["hydra.run.dir=/etc/passwd/run"], ["/etc/passwd/run", "hydra.run.dir"]),
    (["seed=${hydra:job.num}"], ["seed could not be resolved", "seed=<value>"]),  # as tau_beta_optuna sets it
]


@pytest.mark.parametrize(("overrides", "expected"), CASES, ids=[" ".join(case[0]) for case in CASES])
def test_bad_input_fails_with_one_clear_message(
    tmp_path: Path, pendulum_dataset: str, broken_datasets: dict[str, str], overrides: list[str], expected: list[str]
) -> None:
    if "hardware.device=cuda" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_dir = None if any(o.startswith("hydra.run.dir=") for o in overrides) else tmp_path
    result = launch(*TINY, *overrides, run_dir=run_dir)
    assert result.returncode != 0
    for words in expected:
        assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_compile_without_a_cxx_compiler_fails_with_one_clear_message(tmp_path: Path, pendulum_dataset: str) -> None:
    env = {"CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")}
    result = launch(*TINY, "hardware.compile=true", run_dir=tmp_path / "run", env=env)
    assert result.returncode == 2
    for words in ("hardware.compile=true", "C++ compiler", "hardware.compile=false"):
        assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_corrupted_checkpoints_fail_clearly_and_are_kept(tmp_path: Path, pendulum_dataset: str) -> None:
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    result = launch(*TINY, run_dir=tmp_path)
    assert result.returncode == 2
    assert "No readable checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # nothing already written is lost


def test_resuming_with_another_configuration_is_refused(tmp_path: Path, pendulum_dataset: str) -> None:
    assert launch(*TINY, run_dir=tmp_path).returncode == 0
    result = launch(*TINY, "algorithm.expectile=0.9", run_dir=tmp_path)
    assert result.returncode == 2
    assert "different configuration" in result.stderr and "expectile" in result.stderr


def test_full_traceback_on_request(tmp_path: Path, pendulum_dataset: str) -> None:
    result = launch(*TINY, "algorithm.beta=-1", run_dir=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_damaged_dataset_file_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iql.data import recipes

    # a private datasets folder: the session's shared one must keep its pendulum-random intact for later tests
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    recipe = recipes.RECIPES["pendulum-random"]
    data_file = recipes.build(recipe, progress=False) / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])  # cut short, as by a full disk
    result = launch(*TINY, f"dataset.id={recipe.dataset_id}", run_dir=tmp_path / "run")
    assert result.returncode == 2
    assert recipe.dataset_id in result.stderr and "rebuild" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

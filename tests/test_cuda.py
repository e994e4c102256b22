"""On a CUDA GPU: the compiled update (also replayed as a CUDA graph) equals the eager one, and real runs of
``launch.py hardware=cuda`` train, resume bit for bit after a SIGKILL, compile, and fine-tune online.

Every test here is marked ``cuda`` and skipped where ``torch.cuda.is_available()`` is false. ``bash
scripts/gpu-checks.sh`` runs them (``pytest -m cuda --slow``) and then the GPU benchmarks; each test takes seconds on
a GPU, plus compilation (~20-40 s a graph) for the compiled ones.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_same_final_weights, kill_and_resume, launch
from test_fast_update import (
    ACT,
    HIDDEN,
    OBS,
    STEPS,
    B,
    assert_cuda_graphs_update_matches_eager,
    assert_same_step,
    make_batch,
    on_device,
)
from torch._dynamo.utils import counters

from iql.config import AlgorithmConfig, NetworkConfig
from iql.learner import Batch, make_learner

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"needs a CUDA GPU: torch.cuda.is_available() is False here (torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda})",
    ),
]

DEVICE = torch.device("cuda")
# the runs as a user starts them on a GPU: hardware=cuda (device cuda, TF32 matmuls), the default network and batch
CUDA_RUN = ["hardware=cuda", "logger=none", "eval.episodes=2"]
# compiled vs eager on CUDA: Triton's fused kernels round differently from ATen's. One Adam step moves a parameter
# by about its lr (3e-4), so atol 1e-5 still catches a missed, repeated or misordered update.
RTOL, ATOL = 1e-4, 1e-5
# a run that asks for CUDA graphs fails if Inductor skips one (instead of silently running the plain compiled graph),
# and prints why it would have skipped
STRICT_CUDA_GRAPHS = {"TORCHINDUCTOR_CUDAGRAPH_OR_ERROR": "1", "TORCH_LOGS": "cudagraphs"}
DISCRETE_ACTIONS = 3


@pytest.fixture(autouse=True)
def full_fp32_matmuls() -> Iterator[None]:
    """In-process comparisons run in full fp32, whatever an earlier test set (the runs below are subprocesses)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def discrete_batch(seed: int) -> Batch:
    """A random batch of B transitions with one-hot actions over DISCRETE_ACTIONS, on the GPU."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.nn.functional.one_hot(torch.randint(DISCRETE_ACTIONS, (B,), generator=g), DISCRETE_ACTIONS)
    batch = Batch(
        obs=torch.randn(B, OBS, generator=g),
        actions=actions.float(),
        rewards=torch.randn(B, generator=g),
        next_obs=torch.randn(B, OBS, generator=g),
        terminals=(torch.rand(B, generator=g) < 0.2).float(),
    )
    return on_device(batch, DEVICE)


@pytest.mark.parametrize(
    ("algorithm", "discrete"), [("iql", False), ("bc", False), ("iql", True)], ids=["iql", "bc", "discrete-iql"]
)
def test_compiled_update_matches_eager_on_cuda(algorithm: str, discrete: bool) -> None:
    """Compiled (Triton) == eager (cuBLAS, fused Adam) on the GPU: losses, parameters, Adam state, for STEPS updates
    and after a ``load_state_dict`` (a resume)."""
    act_dim = DISCRETE_ACTIONS if discrete else ACT

    def batch_of(seed: int) -> Batch:
        return discrete_batch(seed) if discrete else make_batch(seed, DEVICE)

    learners = []
    for compile in (False, True):
        torch.manual_seed(0)
        network = NetworkConfig(hidden_dims=HIDDEN)
        algo = AlgorithmConfig(name=algorithm)
        learners.append(make_learner(OBS, act_dim, algo, network, 10, DEVICE, compile=compile, discrete=discrete))
    eager, compiled = learners
    assert all(p.is_cuda for module in compiled.modules().values() for p in module.parameters())
    for step in range(STEPS):
        assert_same_step(eager, compiled, batch_of(step), f"step {step}", RTOL, ATOL)
    eager.update(batch_of(50))  # the eager learner moves on alone; the compiled one resumes from it
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))
    assert_same_step(eager, compiled, batch_of(99), "after load_state_dict", RTOL, ATOL)


def recorded_cuda_graphs() -> int:
    """The CUDA graphs Inductor's CUDA-graph trees hold on this GPU (torch internals, read defensively)."""
    from torch._inductor import cudagraph_trees

    manager = cudagraph_trees.get_manager(DEVICE.index or 0, create_if_none_exists=False)
    roots: dict[Any, list[Any]] = getattr(manager, "roots", None) or {}
    return sum(len(nodes) for nodes in roots.values())


def test_cuda_graphs_update_matches_eager_on_cuda() -> None:
    """hardware.cuda_graphs=true on the GPU: the update is recorded as a CUDA graph (Inductor skipped nothing: the
    mutated parameters and Adam moments are static inputs) and its replays == eager, each update's metrics intact."""
    counters.clear()
    compiled = assert_cuda_graphs_update_matches_eager(DEVICE, RTOL, ATOL)
    assert counters["inductor"]["cudagraph_skips"] == 0, "Inductor skipped the CUDA graph: its warning says why"
    assert recorded_cuda_graphs() >= 1, "no CUDA graph was recorded"
    del compiled  # kept alive until here: the CUDA-graph trees of a dead compiled function are freed


def summary_of(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return summary


def assert_trained_on_cuda(run_dir: Path, steps: int) -> dict[str, Any]:
    """The run reached ``steps`` on the GPU (summary.json's device; the checkpoint holds CUDA tensors and CUDA's RNG
    state) with a finite score; returns its summary."""
    summary = summary_of(run_dir)
    assert summary["device"] == "cuda" and summary["steps"] == steps
    assert summary["normalized_score"] is not None and math.isfinite(summary["normalized_score"])
    assert summary["steps_per_s"] > 0
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert all(t.is_cuda for t in saved["learner"]["actor"].values())
    assert "cuda" in saved["rng"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for row in rows for k, v in row.items() if k.endswith("_loss"))
    return summary


def test_training_run_on_cuda(tmp_path: Path, pendulum_dataset: str) -> None:
    """``python launch.py hardware=cuda`` on the default dataset (local mixed Pendulum)."""
    args = ["train.steps=500", "train.log_every=100", "train.eval_every=250", "train.checkpoint_every=250"]
    result = launch(*CUDA_RUN, *args, run_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_trained_on_cuda(tmp_path, 500)


def test_killed_cuda_run_resumes_to_bitwise_identical_weights(tmp_path: Path, pendulum_dataset: str) -> None:
    """SIGKILL after the second checkpoint, resume: the uninterrupted run's networks, bit for bit.

    Bitwise is expected on CUDA here: the sampler draws with its own device generator (checkpointed, as is CUDA's
    global RNG state), cuBLAS GEMMs on one stream are deterministic for fixed shapes, PyTorch's sum/mean reductions
    have a fixed order, fused Adam and the Polyak lerp are elementwise, and no op on this path uses atomics
    (index_add_/scatter_add_ backward, which torch.use_deterministic_algorithms lists). A tiny difference that
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` removes would be cuBLAS's workspace; otherwise a resume bug.
    """
    # long enough that the kill (within ~50 ms of the second checkpoint, step 200) lands well before the end
    args = [*CUDA_RUN, "train.steps=3000", "train.log_every=100", "train.eval_every=1500", "train.checkpoint_every=100"]
    interrupted, reference = kill_and_resume(args, tmp_path)
    assert assert_same_final_weights(interrupted, reference) == 3000
    summary = assert_trained_on_cuda(interrupted, 3000)
    assert summary["resumed_from_steps"] and summary["resumed_from_steps"][0] >= 200


@pytest.mark.parametrize(
    "options",
    [["hardware.compile=true"], ["hardware.compile=true", "hardware.cuda_graphs=true"]],
    ids=["compile", "cuda-graphs"],
)
def test_compiled_run_on_cuda(tmp_path: Path, pendulum_dataset: str, options: list[str]) -> None:
    """``hardware=cuda hardware.compile=true`` (and with CUDA graphs) trains; Inductor skipped no CUDA graph."""
    args = ["train.steps=1000", "train.log_every=100", "train.eval_every=500", "train.checkpoint_every=500"]
    result = launch(*CUDA_RUN, *options, *args, run_dir=tmp_path, env=STRICT_CUDA_GRAPHS)
    assert result.returncode == 0, result.stderr
    assert_trained_on_cuda(tmp_path, 1000)
    log = tmp_path / "launch.log"
    output = result.stdout + result.stderr + (log.read_text() if log.exists() else "")
    assert "skipping cudagraphs" not in output, "Inductor skipped the CUDA graph"


@pytest.mark.parametrize(
    "options",
    [[], ["hardware.compile=true", "hardware.cuda_graphs=true", "online.updates_per_step=2"]],
    ids=["eager", "cuda-graphs-2-updates-per-step"],
)
def test_finetuning_run_on_cuda(tmp_path: Path, pendulum_dataset: str, options: list[str]) -> None:
    """``online=finetune`` on the GPU: offline updates, then environment steps with the sampled action and updates
    on the growing replay buffer (with CUDA graphs, two updates' metrics kept per environment step)."""
    args = ["train.steps=200", "online.steps=300", "train.log_every=100", "train.eval_every=250"]
    overrides = [*CUDA_RUN, "online=finetune", *options, *args, "train.checkpoint_every=250"]
    result = launch(*overrides, run_dir=tmp_path, env=STRICT_CUDA_GRAPHS)
    assert result.returncode == 0, result.stderr
    summary = assert_trained_on_cuda(tmp_path, 500)
    assert summary["switch_step"] == 200 and summary["online_env_steps"] == 300
    assert summary["offline_score"] is not None and summary["online_updates_per_s"] > 0

"""Shared fixtures: one local Minari folder per test session, and a runner for the real entry point."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from iql.learner import BCLearner, IQLLearner
from iql.update import Batch, EagerNetworks, Objective, iql_update

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private $MINARI_DATASETS_PATH: tests build the datasets they use and never touch ~/.minari."""
    root = tmp_path_factory.mktemp("minari")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_API_KEY", None)
    return root


@pytest.fixture(scope="session")
def pendulum_dataset(minari_root: Path) -> str:
    from iql.data import recipes

    recipes.build(recipes.RECIPES["pendulum-mixed"], progress=False)
    return recipes.RECIPES["pendulum-mixed"].dataset_id


@pytest.fixture(scope="session")
def cartpole_dataset(minari_root: Path) -> str:
    """The local discrete-action dataset (CartPole-v1, mixed quality)."""
    from iql.data import recipes

    recipes.build(recipes.RECIPES["cartpole-mixed"], progress=False)
    return recipes.RECIPES["cartpole-mixed"].dataset_id


def require_robotics() -> None:
    """Skip a maze test module where gymnasium-robotics (the ``robotics`` extra) is missing, except in CI, whose
    install includes it: there a missing or broken extra fails the run instead of skipping its acceptance tests."""
    if os.environ.get("CI"):
        import gymnasium_robotics  # noqa: F401
    else:
        pytest.importorskip("gymnasium_robotics")


def launch(
    *overrides: str, run_dir: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python launch.py`` with these overrides, as a user would; output captured."""
    args = [sys.executable, str(REPO / "launch.py"), *overrides]
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    return subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def launch_and_kill_when(marker: Path, *overrides: str, run_dir: Path, timeout: float = 300) -> int:
    """Start ``python launch.py`` and SIGKILL it as soon as ``marker`` exists (a checkpoint, say); its exit code.

    ``-SIGKILL`` means it was killed; anything else, that it ended on its own first (or ``timeout`` s passed).
    """
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    return process.wait()


def kill_and_resume(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """Run ``args`` uninterrupted, and again SIGKILLed after its second checkpoint and relaunched to the end;
    returns (the killed-and-resumed run dir, the reference run dir)."""
    reference = tmp_path / "reference"
    assert launch(*args, run_dir=reference).returncode == 0
    interrupted = tmp_path / "interrupted"
    exit_code = launch_and_kill_when(interrupted / "checkpoint.prev.pt", *args, run_dir=interrupted, timeout=120)
    assert exit_code == -signal.SIGKILL, "the run finished before it could be killed"
    result = launch(*args, run_dir=interrupted)
    assert result.returncode == 0, result.stderr
    return interrupted, reference


def assert_same_final_weights(run_dir: Path, reference: Path) -> int:
    """The two runs' last checkpoints hold the same step, bit-identical networks and bit-identical Adam states (the
    moments and step counts of every optimiser a learner has: BC's actor only); returns that step."""
    final = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    expected = torch.load(reference / "checkpoint.pt", weights_only=False)
    assert final["step"] == expected["step"]
    for net in ("critic", "target_critic", "value", "actor"):
        for name, tensor in expected["learner"].get(net, {}).items():
            assert torch.equal(final["learner"][net][name], tensor), f"{net}.{name} differs"
    for optimizer in ("critic_optimizer", "value_optimizer", "actor_optimizer"):
        states = expected["learner"].get(optimizer, {}).get("state", {})
        for index, state in states.items():
            for key, tensor in state.items():
                got = final["learner"][optimizer]["state"][index][key]
                assert torch.equal(got, tensor), f"{optimizer} state {index}.{key} differs"
    return int(final["step"])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (real training, SLURM)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def broken_datasets(minari_root: Path) -> dict[str, str]:
    """Real Minari datasets a user could end up with: one holding a NaN observation, one with no transitions."""
    import warnings

    import minari
    import numpy as np
    from minari.data_collector import EpisodeBuffer

    obs = np.zeros((4, 3))
    obs[2, 1] = np.nan
    episode = EpisodeBuffer(
        observations=obs,
        actions=np.zeros((3, 1), np.float32),
        rewards=np.zeros(3),
        terminations=np.zeros(3, bool),
        truncations=np.array([False, False, True]),
        infos={},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("test/nan-v0", [episode], env="Pendulum-v1", data_format="hdf5")
        minari.create_dataset_from_buffers("test/empty-v0", [], env="Pendulum-v1", data_format="hdf5")
    return {"nan": "test/nan-v0", "empty": "test/empty-v0"}


def random_batch(
    seed: int,
    obs_dim: int = 5,
    act_dim: int = 2,
    size: int = 64,
    terminal_rate: float = 0.1,
    terminals: torch.Tensor | None = None,
) -> Batch:
    """A reproducible random ``Batch``: actions in [−1, 1], ``terminal_rate`` of terminations unless given."""
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(size, obs_dim, generator=g),
        actions=torch.rand(size, act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(size, generator=g),
        next_obs=torch.randn(size, obs_dim, generator=g),
        terminals=terminals if terminals is not None else (torch.rand(size, generator=g) < terminal_rate).float(),
    )


def sweep_summaries(sweep_dir: Path) -> list[dict]:
    """The ``summary.json`` of every job dir of a multirun, in job order."""
    paths = sorted(sweep_dir.glob("*/summary.json"), key=lambda path: int(path.parent.name))
    return [json.loads(path.read_text()) for path in paths]


class RecordingNetworks(EagerNetworks):
    """The eager networks of a learner, recording at each gradient step of the real ``iql_update``: its loss, which
    networks its backward reached, and a copy of every network as it stood when the loss was computed."""

    def __init__(self, learner: BCLearner) -> None:
        super().__init__(learner.modules(), learner.step_optimizers())
        self.losses: dict[str, torch.Tensor] = {}
        self.reached: dict[str, set[str]] = {}
        self.fully_reached: dict[str, set[str]] = {}
        self.snapshots: dict[str, dict[str, torch.nn.Module]] = {}

    def gradient_step(self, name: str, objective: Objective) -> tuple[torch.Tensor, object]:
        self.snapshots[name] = copy.deepcopy(self.modules)
        for module in self.modules.values():
            module.zero_grad(set_to_none=True)
        loss, diagnostics = objective(self.modules[name])
        loss.backward()
        got = {
            net: [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters()]
            for net, m in self.modules.items()
        }
        self.reached[name] = {net for net, flags in got.items() if any(flags)}
        self.fully_reached[name] = {net for net, flags in got.items() if all(flags)}
        self.optimizers[name].step()
        self.losses[name] = loss.detach()
        return loss.detach(), diagnostics


def recorded_update(learner: IQLLearner, batch: Batch) -> RecordingNetworks:
    """One real ``iql_update`` of ``learner`` on ``batch``, recorded."""
    nets = RecordingNetworks(learner)
    iql_update(nets, batch, learner.hyperparameters)
    return nets

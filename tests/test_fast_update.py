"""The fast update computes what the straightforward one does: same losses, same parameter changes.

The learner's update (batched critic ensemble, shared target-critic forward, one V forward for s and s', fused
Adam, fused Polyak) is checked against ``iql.reference.ReferenceIQL`` — IQL written plainly, as ports write it —
started from the same weights; the compiled learner is checked against the eager one, also with CUDA graphs
(``hardware.cuda_graphs``, which on a CPU torch skips: ``tests/test_cuda.py`` runs the same checks on a GPU).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import random_batch

from iql.config import AlgorithmConfig, HardwareConfig, NetworkConfig, RunConfig, validate
from iql.errors import ConfigError
from iql.learner import Batch, BCLearner, IQLLearner, make_learner
from iql.reference import ReferenceIQL

OBS, ACT, B, STEPS = 5, 2, 64, 4
HIDDEN = [32, 32]


def make_batch(seed: int, device: torch.device | str = "cpu") -> Batch:
    return on_device(random_batch(seed, OBS, ACT, B, terminal_rate=0.2), device)


def on_device(batch: Batch, device: torch.device | str) -> Batch:
    """``batch`` with every tensor moved to ``device``."""
    return Batch(*(getattr(batch, field.name).to(device) for field in dataclasses.fields(batch)))


def reference_with_weights_of(learner: IQLLearner, algorithm: AlgorithmConfig, total_steps: int) -> ReferenceIQL:
    """A ReferenceIQL whose q1, q2 (and targets), V and π start from the learner's weights."""
    reference = ReferenceIQL(OBS, ACT, algorithm, HIDDEN, total_steps)
    members = [layer for layer in learner.critic.net if hasattr(layer, "weight")]
    with torch.no_grad():
        for index, (q, q_target) in enumerate(
            ((reference.q1, reference.q1_target), (reference.q2, reference.q2_target))
        ):
            linears = [layer for layer in q if isinstance(layer, torch.nn.Linear)]
            for linear, member in zip(linears, members, strict=True):
                linear.weight.copy_(member.weight[index].T)  # ensemble weights are (E, in, out)
                linear.bias.copy_(member.bias[index, 0])
            q_target.load_state_dict(q.state_dict())
        reference.vf.load_state_dict(learner.value.net.state_dict())
        reference.actor.load_state_dict(learner.actor.state_dict())
    return reference


@pytest.mark.parametrize("algorithm", [AlgorithmConfig(), AlgorithmConfig(expectile=0.9, beta=10.0, discount=0.9)])
def test_update_matches_the_plain_reference_implementation(algorithm: AlgorithmConfig) -> None:
    torch.manual_seed(0)
    learner = IQLLearner(OBS, ACT, algorithm, NetworkConfig(hidden_dims=HIDDEN), total_steps=10)
    reference = reference_with_weights_of(learner, algorithm, total_steps=10)
    before = {name: p.detach().clone() for name, p in learner.value.net.named_parameters()}
    for step in range(STEPS):
        batch = make_batch(step)
        ours = learner.update(batch)
        theirs = reference.update(batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminals)
        for key in ("value_loss", "actor_loss", "critic_loss"):
            assert ours[key].item() == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), f"{key} at step {step}"
    # the same parameter changes: V, π, each online critic and each target critic
    assert any(not torch.equal(p, before[name]) for name, p in learner.value.net.named_parameters())
    pairs = [(learner.value.net, reference.vf), (learner.actor, reference.actor)]
    for ours_net, their_net in pairs:
        for (name, p), q in zip(ours_net.named_parameters(), their_net.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=f"{name}")
    members = [layer for layer in learner.critic.net if hasattr(layer, "weight")]
    targets = [layer for layer in learner.target_critic.net if hasattr(layer, "weight")]
    for index, (q, q_target) in enumerate(((reference.q1, reference.q1_target), (reference.q2, reference.q2_target))):
        linears = [layer for layer in q if isinstance(layer, torch.nn.Linear)]
        target_linears = [layer for layer in q_target if isinstance(layer, torch.nn.Linear)]
        for ours_layers, their_layers in ((members, linears), (targets, target_linears)):
            for layer, linear in zip(ours_layers, their_layers, strict=True):
                torch.testing.assert_close(layer.weight[index].T, linear.weight, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(layer.bias[index, 0], linear.bias, rtol=1e-4, atol=1e-5)
    assert learner.step == STEPS


def test_compile_flag_is_validated_and_reaches_the_learner() -> None:
    with pytest.raises(ConfigError, match="hardware.compile"):
        validate(RunConfig(hardware=HardwareConfig(compile="yes")))  # type: ignore[arg-type]
    assert make_learner(OBS, ACT, AlgorithmConfig(), NetworkConfig(hidden_dims=HIDDEN), 10).compiled_update is None
    compiled = make_learner(OBS, ACT, AlgorithmConfig(), NetworkConfig(hidden_dims=HIDDEN), 10, compile=True)
    assert compiled.compiled_update is not None


def assert_same_step(
    eager: BCLearner, compiled: BCLearner, batch: Batch, what: str, rtol: float = 1e-4, atol: float = 1e-6
) -> None:
    """One update of each on ``batch``: the same metrics, then the same parameters, Adam state and step."""
    ours, theirs = compiled.update(batch), eager.update(batch)
    assert_same_metrics(ours, theirs, what, rtol, atol)
    assert_same_state(eager, compiled, what, rtol, atol)


def assert_same_metrics(
    ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], what: str, rtol: float, atol: float
) -> None:
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=rtol, atol=atol, msg=f"{key}, {what}")


def assert_same_state(eager: BCLearner, compiled: BCLearner, what: str, rtol: float, atol: float) -> None:
    """The same parameters, Adam state (moments, step counts, lr) and learner step."""
    for name, module in eager.modules().items():
        for p, q in zip(module.parameters(), compiled.modules()[name].parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=rtol, atol=atol, msg=f"{name}, {what}")
    for name, optimizer in eager.optimizers().items():
        theirs_state, ours_state = optimizer.state_dict(), compiled.optimizers()[name].state_dict()
        torch.testing.assert_close(ours_state, theirs_state, rtol=rtol, atol=atol, msg=f"{name}, {what}")
    assert compiled.step == eager.step


COMPILED_CASES = [
    pytest.param(AlgorithmConfig(), NetworkConfig(hidden_dims=HIDDEN), id="iql"),
    # same shapes, other constants: must not reuse the graph compiled for the case above (sequential sweeps)
    pytest.param(
        AlgorithmConfig(expectile=0.9, beta=10.0, discount=0.9),
        NetworkConfig(hidden_dims=HIDDEN),
        id="iql-other-constants",
    ),
    pytest.param(
        AlgorithmConfig(policy="deterministic", expectile=0.9, beta=10.0),
        NetworkConfig(hidden_dims=HIDDEN, layer_norm=True, num_critics=3),
        id="iql-deterministic-layernorm-3critics",
        marks=pytest.mark.slow,
    ),
    pytest.param(AlgorithmConfig(name="bc"), NetworkConfig(hidden_dims=HIDDEN), id="bc", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("algorithm", "network"), COMPILED_CASES)
def test_compiled_update_matches_eager_update(algorithm: AlgorithmConfig, network: NetworkConfig) -> None:
    """The whole update as one compiled graph == the eager update; also after a resume (``load_state_dict``).

    ~30 s on a 2-core CPU (compilation), under the ~60 s that would make it a slow test.
    """
    learners = []
    for compile in (False, True):
        torch.manual_seed(0)
        learners.append(make_learner(OBS, ACT, algorithm, network, total_steps=10, compile=compile))
    eager, compiled = learners
    for step in range(STEPS):
        assert_same_step(eager, compiled, make_batch(step), f"step {step}")
    for step in range(STEPS, STEPS + 2):  # the eager learner moves on alone; the compiled one resumes from it
        eager.update(make_batch(step))
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))
    assert_same_step(eager, compiled, make_batch(99), "after load_state_dict")


def test_cuda_graphs_need_compile() -> None:
    with pytest.raises(ConfigError, match="hardware.cuda_graphs.*hardware.compile=true"):
        validate(RunConfig(hardware=HardwareConfig(cuda_graphs=True)))
    validate(RunConfig(hardware=HardwareConfig(compile=True, cuda_graphs=True)))
    with pytest.raises(ValueError, match="needs compile=True"):
        make_learner(OBS, ACT, AlgorithmConfig(), NetworkConfig(hidden_dims=HIDDEN), 10, cuda_graphs=True)


def assert_cuda_graphs_update_matches_eager(device: torch.device, rtol: float = 1e-4, atol: float = 1e-6) -> BCLearner:
    """``cuda_graphs=True`` == eager over STEPS + 2 updates (on a GPU: warm-up, recording, then replays), whose
    metrics, all kept, still hold their own values at the end (each replay overwrites the graph's outputs: the
    update clones them); then after a ``load_state_dict`` (new Adam tensors: the graph re-records) and once more.
    Returns the compiled learner."""
    learners = []
    for compile in (False, True):
        torch.manual_seed(0)
        network = NetworkConfig(hidden_dims=HIDDEN)
        learners.append(make_learner(OBS, ACT, AlgorithmConfig(), network, 10, device, compile, cuda_graphs=compile))
    eager, compiled = learners
    assert compiled.compiled_update is not None and compiled.compiled_update.cuda_graphs
    batches = [make_batch(step, device) for step in range(STEPS + 2)]
    kept = [(compiled.update(batch), eager.update(batch)) for batch in batches]
    for step, (ours, theirs) in enumerate(kept):
        assert_same_metrics(ours, theirs, f"step {step}, read after all {len(kept)} updates", rtol, atol)
    assert_same_state(eager, compiled, f"after {len(kept)} updates", rtol, atol)
    eager.update(make_batch(50, device))  # the eager learner moves on alone; the compiled one resumes from it
    compiled.load_state_dict(copy.deepcopy(eager.state_dict()))
    for seed in (98, 99):
        assert_same_step(eager, compiled, make_batch(seed, device), f"update {seed - 97} after load_state_dict")
    return compiled


def test_cuda_graphs_update_matches_eager_on_cpu() -> None:
    """On a CPU torch skips the CUDA graph: the compiled update with cuda_graphs=true is still the eager one (~17 s
    of compilation on a 2-core CPU)."""
    assert_cuda_graphs_update_matches_eager(torch.device("cpu"))

"""Discrete actions: one-hot actions, a critic output per action, a categorical policy, greedy evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_same_final_weights, kill_and_resume, launch, recorded_update, sweep_summaries

from iql.config import AlgorithmConfig, NetworkConfig
from iql.data import recipes
from iql.data.transforms import DiscreteActions, ObsNormalizer
from iql.data.transitions import check_spaces
from iql.errors import DatasetError
from iql.evaluation import evaluate
from iql.learner import Batch, BCLearner, IQLLearner, make_learner

OBS, ACTIONS, B = 3, 2, 2
NET = NetworkConfig(hidden_dims=[4])
TINY = ["network.hidden_dims=[32,32]", "train.batch_size=64", "eval.episodes=2", "logger=none", "hardware.threads=1"]


def constant_output(module: torch.nn.Module, bias: torch.Tensor) -> None:
    """Make an MLP ignore its input: zero weights everywhere, ``bias`` on its output layer."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        layers = [m for m in module.modules() if hasattr(m, "bias") and getattr(m, "bias", None) is not None]
        layers[-1].bias.copy_(bias.reshape(layers[-1].bias.shape))


def hand_made_learner(**algorithm: float) -> IQLLearner:
    """A discrete IQL learner whose networks output constants: Q_1 = [1, 4], Q_2 = [2, 3] (per action, for
    online and target critics), V = 2, policy logits [0, ln 3] (π = [¼, ¾])."""
    learner = IQLLearner(OBS, ACTIONS, AlgorithmConfig(**algorithm), NET, total_steps=10, discrete=True)  # type: ignore[arg-type]
    for critic in (learner.critic, learner.target_critic):
        constant_output(critic.net, torch.tensor([[[1.0, 4.0]], [[2.0, 3.0]]]))
    constant_output(learner.value.net, torch.tensor([2.0]))
    constant_output(learner.actor.net, torch.tensor([0.0, math.log(3.0)]))
    return learner


def batch(actions: list[int], rewards: list[float], terminals: list[float]) -> Batch:
    one_hot = torch.nn.functional.one_hot(torch.tensor(actions), ACTIONS).float()
    return Batch(torch.randn(B, OBS), one_hot, torch.tensor(rewards), torch.randn(B, OBS), torch.tensor(terminals))


def test_discrete_losses_against_hand_computed_values() -> None:
    learner = hand_made_learner(expectile=0.7, beta=1.0, discount=0.5)
    nets = recorded_update(learner, batch(actions=[0, 1], rewards=[1.0, 0.0], terminals=[0.0, 1.0]))
    # Q̂(s, a) = min over the target critics at the dataset action: [min(1, 2), min(4, 3)] = [1, 3]; V = 2
    # value: u = Q̂ − V = [−1, 1] → mean(0.3 · 1, 0.7 · 1)
    assert nets.losses["value"].item() == pytest.approx(0.5, rel=1e-6)
    # V then takes one Adam step (its first moves every parameter by the lr, 3e-4, against the gradient's sign):
    # only the output bias has a gradient, −mean(2 · w · u) = −0.4, so V' = 2 + 3e-4
    new_value = learner.value(torch.zeros(1, OBS)).item()
    assert new_value == pytest.approx(2.0 + 3e-4, abs=1e-6)
    # policy: A = Q̂ − V' = [1 − V', 3 − V'], w = exp(β · A); −mean(w · log π(a)) with π = [¼, ¾]
    weights = [math.exp(1.0 - new_value), math.exp(3.0 - new_value)]
    expected_actor = -(weights[0] * math.log(0.25) + weights[1] * math.log(0.75)) / 2
    assert nets.losses["actor"].item() == pytest.approx(expected_actor, rel=1e-5)
    # critics: target r + γ(1 − d)V(s') = [1 + 0.5 · V', 0]; Q_1(s, a) = [1, 4], Q_2(s, a) = [2, 3]
    target = [1.0 + 0.5 * new_value, 0.0]
    expected_critic = sum(((q[0] - target[0]) ** 2 + (q[1] - target[1]) ** 2) / 2 for q in ([1.0, 4.0], [2.0, 3.0]))
    assert nets.losses["critic"].item() == pytest.approx(expected_critic, rel=1e-5)


def test_each_discrete_loss_sends_gradients_only_to_its_own_network() -> None:
    torch.manual_seed(0)
    learner = IQLLearner(5, 3, AlgorithmConfig(), NetworkConfig(hidden_dims=[16, 16]), 10, discrete=True)
    actions = torch.nn.functional.one_hot(torch.randint(3, (32,)), 3).float()
    data = Batch(torch.randn(32, 5), actions, torch.randn(32), torch.randn(32, 5), torch.zeros(32))
    nets = recorded_update(learner, data)
    assert nets.reached == {"value": {"value"}, "actor": {"actor"}, "critic": {"critic"}}
    # the discrete critic's last layer: only the dataset actions' outputs get gradients, every member some
    assert nets.fully_reached["critic"] == {"critic"}


def test_beta_zero_gives_the_discrete_behaviour_cloning_loss() -> None:
    data = batch(actions=[1, 0], rewards=[0.0, 1.0], terminals=[0.0, 0.0])
    iql = hand_made_learner(beta=0.0)
    bc = BCLearner(OBS, ACTIONS, AlgorithmConfig(name="bc"), NET, 10, discrete=True)
    bc.actor.load_state_dict(iql.actor.state_dict())
    bc_loss = bc.update(data)["actor_loss"].item()
    assert recorded_update(iql, data).losses["actor"].item() == pytest.approx(bc_loss, rel=1e-6)
    assert bc_loss == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, rel=1e-6)  # plain log-likelihood


def test_greedy_evaluation_picks_the_argmax() -> None:
    learner = hand_made_learner()
    obs = torch.randn(4, OBS)
    assert torch.equal(learner.act(obs), torch.tensor([[0.0, 1.0]] * 4))  # logits [0, ln 3]: action 1
    learner.actor.net = torch.nn.Identity()  # logits = obs (OBS = 3 actions' worth): each row its own argmax
    rows = torch.tensor([[0.3, -1.0, 0.1], [-2.0, 5.0, 4.9], [0.0, 0.1, 0.2]])
    assert torch.equal(learner.act(rows), torch.eye(3))
    codec = DiscreteActions(n=3, start=-1)
    assert codec.to_env(np.array([[0.1, 0.7, 0.2], [0.0, 0.0, 1.0]])).tolist() == [0, 1]


def test_evaluation_steps_discrete_envs_with_the_greedy_action() -> None:
    """CartPole evaluated with the scripted controller as a one-hot 'policy' balances for all 500 steps."""

    def act(obs: torch.Tensor) -> torch.Tensor:
        choice = [recipes.cartpole_controller(row, np.random.default_rng()) for row in obs.numpy()]
        return torch.nn.functional.one_hot(torch.tensor(choice), 2).float()

    result = evaluate(
        act,
        lambda: gym.make("CartPole-v1"),
        3,
        0,
        torch.device("cpu"),
        DiscreteActions(2),
        ObsNormalizer(),
        ref_min=0.0,
        ref_max=500.0,
    )
    assert result.returns.tolist() == [500.0, 500.0, 500.0]
    assert result.normalized_score == pytest.approx(100.0)


def test_spaces_that_cannot_be_flattened_are_named() -> None:
    minigrid_like = gym.spaces.Dict(
        {
            "direction": gym.spaces.Discrete(4),
            "image": gym.spaces.Box(0, 255, (7, 7, 3)),
            "mission": gym.spaces.Text(64),
        }
    )
    with pytest.raises(DatasetError, match=r"observation\['mission'\] is Text.*MiniGrid"):
        check_spaces(minigrid_like, gym.spaces.Discrete(3), "minigrid/BabyAI-x-v0")
    with pytest.raises(DatasetError, match="MultiDiscrete"):
        check_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiDiscrete([2, 2]), "x/y-v0")


def test_discrete_dataset_loads_as_one_hot_actions(cartpole_dataset: str) -> None:
    from iql.config import DatasetConfig
    from iql.data import prepare

    data = prepare(DatasetConfig(id=cartpole_dataset))
    assert data.discrete and data.act_dim == 2 and data.obs_dim == 4
    assert np.array_equal(data.actions.sum(axis=1), np.ones(len(data)))
    assert set(np.unique(data.actions)) == {0.0, 1.0}


def test_a_second_discrete_environment_trains_without_code_change(tmp_path: Path) -> None:
    result = launch(*TINY, "dataset=acrobot_mixed", "train.steps=200", "train.eval_every=200", run_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset_id"] == "iql/acrobot/mixed-v0"
    assert summary["normalized_score"] is not None and summary["steps"] == 200


@pytest.mark.slow
def test_iql_beats_bc_on_the_discrete_mixed_dataset(tmp_path: Path, cartpole_dataset: str) -> None:
    """Most upright-state actions in cartpole-mixed are wrong: greedy BC copies them, IQL's advantage weights
    pick the balancing controller's."""
    result = launch(
        "-m",
        "dataset=cartpole_mixed",
        "algorithm=iql,bc",
        "seed=0,1,2",
        "train.steps=3000",
        "train.eval_every=3000",
        "eval.episodes=10",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sweep_summaries(tmp_path)
    scores = {name: [s["normalized_score"] for s in summaries if s["algorithm"] == name] for name in ("iql", "bc")}
    iql, bc = np.mean(scores["iql"]), np.mean(scores["bc"])
    print(f"CartPole mixed, normalized score over 3 seeds: IQL {iql:.1f} {scores['iql']}, BC {bc:.1f} {scores['bc']}")
    assert iql > bc + 30.0, scores
    assert min(scores["iql"]) > max(scores["bc"]), scores


@pytest.mark.slow
def test_killed_discrete_run_resumes_to_identical_weights(tmp_path: Path, cartpole_dataset: str) -> None:
    args = [
        *TINY,
        "dataset=cartpole_mixed",
        "train.steps=600",
        "train.log_every=50",
        "train.eval_every=300",
        "train.checkpoint_every=100",
    ]
    interrupted, reference = kill_and_resume(args, tmp_path)
    assert assert_same_final_weights(interrupted, reference) == 600


@pytest.mark.slow
def test_compiled_discrete_update_matches_eager() -> None:
    """The same ``iql_update`` with discrete heads, compiled (~30 s): the same losses and parameters as eager."""
    learners = []
    for compile in (False, True):
        torch.manual_seed(0)
        learners.append(
            make_learner(
                5, 3, AlgorithmConfig(), NetworkConfig(hidden_dims=[16, 16]), 10, compile=compile, discrete=True
            )
        )
    eager, compiled = learners
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        actions = torch.nn.functional.one_hot(torch.randint(3, (32,), generator=g), 3).float()
        data = Batch(
            torch.randn(32, 5, generator=g),
            actions,
            torch.randn(32, generator=g),
            torch.randn(32, 5, generator=g),
            torch.zeros(32),
        )
        ours, theirs = compiled.update(data), eager.update(data)
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)
    for name, module in eager.modules().items():
        for p, q in zip(module.parameters(), compiled.modules()[name].parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)

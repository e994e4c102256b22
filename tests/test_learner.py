"""The learner: gradient isolation, the official update order's ingredients, schedules, and that it learns."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
from conftest import random_batch, recorded_update

from iql import losses
from iql.config import AlgorithmConfig, NetworkConfig
from iql.learner import Batch, BCLearner, IQLLearner

OBS, ACT, B = 5, 2, 64
NET = NetworkConfig(hidden_dims=[32, 32])


def make_batch(seed: int = 0, terminals: torch.Tensor | None = None) -> Batch:
    return random_batch(seed, OBS, ACT, B, terminal_rate=0.1, terminals=terminals)


def make_iql(total_steps: int = 100, **algorithm: object) -> IQLLearner:
    torch.manual_seed(0)
    return IQLLearner(OBS, ACT, AlgorithmConfig(**algorithm), NET, total_steps)  # type: ignore[arg-type]


def test_each_loss_sends_gradients_only_to_its_own_network() -> None:
    nets = recorded_update(make_iql(), make_batch())
    assert nets.reached == {"value": {"value"}, "actor": {"actor"}, "critic": {"critic"}}
    assert nets.fully_reached == nets.reached  # every parameter of the network gets a gradient


def test_value_regresses_on_the_min_of_the_target_critics_not_the_online_ones() -> None:
    learner, batch = make_iql(expectile=0.9), make_batch()
    with torch.no_grad():  # make the online critic differ from its target
        for p in learner.critic.parameters():
            p.add_(1.0)
    before = {name: copy.deepcopy(m) for name, m in learner.modules().items()}
    nets = recorded_update(learner, batch)
    value = before["value"](batch.obs)
    target_min = before["target_critic"](batch.obs, batch.actions).min(dim=0).values
    online_min = before["critic"](batch.obs, batch.actions).min(dim=0).values
    assert nets.losses["value"].item() == pytest.approx(losses.value_loss(target_min, value, 0.9).item(), rel=1e-6)
    assert nets.losses["value"].item() != pytest.approx(losses.value_loss(online_min, value, 0.9).item(), rel=1e-3)


def test_bellman_target_uses_the_updated_value_and_bootstraps_unless_terminated() -> None:
    terminals = torch.zeros(B)
    terminals[::2] = 1.0
    batch = make_batch(terminals=terminals)
    nets = recorded_update(make_iql(discount=0.9), batch)
    at_critic_step = nets.snapshots["critic"]  # V already updated, Q not yet
    next_value = at_critic_step["value"](batch.next_obs).detach()
    q_values = at_critic_step["critic"](batch.obs, batch.actions)
    expected = losses.critic_loss(q_values, batch.rewards + 0.9 * (1 - terminals) * next_value)
    assert nets.losses["critic"].item() == pytest.approx(expected.item(), rel=1e-5)
    stale_value = nets.snapshots["value"]["value"](batch.next_obs).detach()  # V before its own step
    stale = losses.critic_loss(q_values, batch.rewards + 0.9 * (1 - terminals) * stale_value)
    never_terminal = losses.critic_loss(q_values, batch.rewards + 0.9 * next_value)
    assert nets.losses["critic"].item() != pytest.approx(stale.item(), rel=1e-4)
    assert nets.losses["critic"].item() != pytest.approx(never_terminal.item(), rel=1e-4)


def test_beta_zero_gives_the_behaviour_cloning_actor_loss() -> None:
    batch = make_batch()
    iql = make_iql(beta=0.0)
    torch.manual_seed(0)
    bc = BCLearner(OBS, ACT, AlgorithmConfig(name="bc"), NET, 100)
    bc.actor.load_state_dict(iql.actor.state_dict())
    iql_actor_loss = recorded_update(iql, batch).losses["actor"]
    bc_actor_loss = bc.update(batch)["actor_loss"]
    assert iql_actor_loss.item() == pytest.approx(bc_actor_loss.item(), rel=1e-6)


def test_cosine_actor_schedule_reaches_zero_at_train_steps() -> None:
    learner = make_iql(total_steps=20)
    lrs = []
    for step in range(20):
        lrs.append(learner.actor_optimizer.param_groups[0]["lr"])
        learner.update(make_batch(step))
    assert lrs[0] == pytest.approx(3e-4)
    assert lrs[10] == pytest.approx(1.5e-4)
    assert learner.actor_optimizer.param_groups[0]["lr"] == 0.0
    assert learner.critic_optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)  # critics are not scheduled


def test_polyak_moves_target_by_rate() -> None:
    learner = make_iql(polyak_rate=0.5)
    before = [p.clone() for p in learner.target_critic.parameters()]
    learner.update(make_batch())
    for old, new, online in zip(before, learner.target_critic.parameters(), learner.critic.parameters(), strict=True):
        assert torch.allclose(new, 0.5 * old + 0.5 * online, atol=1e-6)


@pytest.mark.parametrize("policy", ["gaussian", "deterministic"])
def test_losses_go_down_on_a_fixed_dataset(policy: str) -> None:
    learner = make_iql(total_steps=400, policy=policy, actor_schedule="constant")
    data = make_batch(0)
    first = learner.update(data)
    for _ in range(300):
        last = learner.update(data)
    assert last["critic_loss"] < 0.5 * first["critic_loss"]
    assert last["actor_loss"] < first["actor_loss"]
    assert learner.act(data.obs).abs().max() <= 1.0


def test_ensemble_members_are_independent_linear_layers() -> None:
    learner = make_iql()
    obs, actions = make_batch().obs, make_batch().actions
    q = learner.critic(obs, actions)
    for member in range(2):  # recompute member i with plain matmuls
        x = torch.cat([obs, actions], -1)
        layers = [m for m in learner.critic.net if hasattr(m, "weight")]
        for i, layer in enumerate(layers):
            x = x @ layer.weight[member] + layer.bias[member]
            if i < len(layers) - 1:
                x = torch.relu(x)
        assert torch.allclose(q[member], x.squeeze(-1), atol=1e-5)


def test_state_dict_round_trip_continues_identically() -> None:
    a = make_iql()
    for step in range(3):
        a.update(make_batch(step))
    buffer = io.BytesIO()  # through bytes, as a checkpoint does (Adam's load_state_dict aliases live tensors)
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_iql()
    b.load_state_dict(torch.load(buffer))
    metrics_a, metrics_b = a.update(make_batch(9)), b.update(make_batch(9))
    assert {k: v.item() for k, v in metrics_a.items()} == {k: v.item() for k, v in metrics_b.items()}
    assert b.step == 4 and dataclasses.asdict(b.algorithm) == dataclasses.asdict(a.algorithm)

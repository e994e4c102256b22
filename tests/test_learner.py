"""The learner: gradient isolation, the official update order's ingredients, schedules, and that it learns."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from conftest import random_batch

from iql.config import AlgorithmConfig, NetworkConfig
from iql.learner import Batch, BCLearner, IQLLearner

OBS, ACT, B = 5, 2, 64
NET = NetworkConfig(hidden_dims=[32, 32])


def make_batch(seed: int = 0, terminals: torch.Tensor | None = None) -> Batch:
    return random_batch(seed, OBS, ACT, B, terminal_rate=0.1, terminals=terminals)


def make_iql(total_steps: int = 100, **algorithm: object) -> IQLLearner:
    torch.manual_seed(0)
    return IQLLearner(OBS, ACT, AlgorithmConfig(**algorithm), NET, total_steps)  # type: ignore[arg-type]


def grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters()]


def test_each_loss_sends_gradients_only_to_its_own_network() -> None:
    learner, batch = make_iql(), make_batch()
    nets = {
        "critic": learner.critic,
        "target_critic": learner.target_critic,
        "value": learner.value,
        "actor": learner.actor,
    }
    target_q = learner.target_q(batch.obs, batch.actions)
    advantage, target = learner.advantage_and_target(batch, target_q)
    terms = {
        "value": lambda: learner.value_term(batch, target_q)[0],
        "actor": lambda: learner.actor_loss(batch.obs, batch.actions, torch.exp(advantage)),
        "critic": lambda: learner.critic_term(batch, target)[0],
    }
    for owner, loss in terms.items():
        for net in nets.values():
            net.zero_grad(set_to_none=True)
        loss().backward()
        for name, net in nets.items():
            assert all(grads(net)) == (name == owner), f"{owner} loss sent gradients to {name}"
            assert any(grads(net)) == (name == owner), f"{owner} loss sent gradients to {name}"


def test_target_q_is_min_of_target_critics_not_online() -> None:
    learner, batch = make_iql(), make_batch()
    with torch.no_grad():  # make the online critic differ from its target
        for p in learner.critic.parameters():
            p.add_(1.0)
    expected = learner.target_critic(batch.obs, batch.actions).min(dim=0).values
    online = learner.critic(batch.obs, batch.actions).min(dim=0).values
    assert torch.equal(learner.target_q(batch.obs, batch.actions), expected)
    assert not torch.allclose(expected, online)


def test_bellman_target_bootstraps_unless_terminated() -> None:
    learner = make_iql(discount=0.9)
    terminals = torch.zeros(B)
    terminals[::2] = 1.0
    batch = make_batch(terminals=terminals)
    _, target = learner.advantage_and_target(batch, learner.target_q(batch.obs, batch.actions))
    next_value = learner.value(batch.next_obs).detach()
    assert torch.allclose(target[::2], batch.rewards[::2])
    assert torch.allclose(target[1::2], batch.rewards[1::2] + 0.9 * next_value[1::2], atol=1e-6)


def test_beta_zero_gives_the_behaviour_cloning_actor_loss() -> None:
    batch = make_batch()
    iql = make_iql(beta=0.0)
    torch.manual_seed(0)
    bc = BCLearner(OBS, ACT, AlgorithmConfig(name="bc"), NET, 100)
    bc.actor.load_state_dict(iql.actor.state_dict())
    target_q = iql.target_q(batch.obs, batch.actions)
    advantage, _ = iql.advantage_and_target(batch, target_q)
    from iql.losses import awr_weights

    iql_loss = iql.actor_loss(batch.obs, batch.actions, awr_weights(advantage, 0.0, 100.0))
    bc_loss = bc.actor_loss(batch.obs, batch.actions, torch.ones(B))
    assert iql_loss.item() == pytest.approx(bc_loss.item())


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

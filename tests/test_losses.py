"""The loss terms against the paper's formulas (Kostrikov et al., 2021, Eqs. 5-7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iql import losses


def analytic_expectile(sample: np.ndarray, expectile: float) -> float:
    """The τ-expectile m of a sample: τ · E[(y − m)₊] = (1 − τ) · E[(m − y)₊], found by bisection."""
    low, high = float(sample.min()), float(sample.max())
    for _ in range(200):
        mid = 0.5 * (low + high)
        balance = expectile * np.maximum(sample - mid, 0).mean() - (1 - expectile) * np.maximum(mid - sample, 0).mean()
        low, high = (mid, high) if balance > 0 else (low, mid)
    return 0.5 * (low + high)


@pytest.mark.parametrize("expectile", [0.1, 0.5, 0.7, 0.9, 0.99])
def test_value_loss_minimiser_is_the_expectile(expectile: float) -> None:
    sample = np.random.default_rng(0).exponential(size=2000)  # skewed: expectiles differ from the mean
    target = torch.tensor(sample, dtype=torch.float64)
    v = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([v], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = losses.value_loss(target, v.expand_as(target), expectile)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert v.item() == pytest.approx(analytic_expectile(sample, expectile), abs=1e-4)
    if expectile > 0.5:  # an upper expectile: above the mean
        assert v.item() > sample.mean()


def test_expectile_weights_underestimates_by_tau() -> None:
    diff = torch.tensor([2.0, -2.0])  # target above / below the prediction
    assert losses.expectile_loss(diff[:1], 0.9).item() == pytest.approx(0.9 * 4)
    assert losses.expectile_loss(diff[1:], 0.9).item() == pytest.approx(0.1 * 4)


def test_td_target_masks_terminations_only() -> None:
    rewards = torch.tensor([1.0, 1.0])
    terminals = torch.tensor([0.0, 1.0])
    next_value = torch.tensor([10.0, 10.0])
    assert losses.td_target(rewards, terminals, next_value, 0.9).tolist() == pytest.approx([10.0, 1.0])


def test_critic_loss_sums_members() -> None:
    q = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    assert losses.critic_loss(q, torch.tensor([2.0, 2.0])).item() == pytest.approx(2.0)


def test_awr_weights_clip_and_direction() -> None:
    advantage = torch.tensor([-1.0, 0.0, 1.0, 1e6, float("inf")])
    weights = losses.awr_weights(advantage, beta=3.0, max_weight=100.0)
    assert torch.isfinite(weights).all()
    assert weights[1].item() == pytest.approx(1.0)
    assert weights[2].item() == pytest.approx(math.exp(3.0))  # β multiplies the advantage
    assert weights[3].item() == pytest.approx(100.0) and weights[4].item() == pytest.approx(100.0)
    assert torch.equal(losses.awr_weights(advantage[:4], beta=0.0, max_weight=100.0), torch.ones(4))


def test_gaussian_log_prob_matches_torch_normal() -> None:
    mean, actions = torch.randn(5, 3), torch.randn(5, 3)
    log_std = torch.tensor([-1.0, 0.0, 0.5])
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert torch.allclose(losses.gaussian_log_prob(mean, log_std, actions), expected, atol=1e-6)


def test_categorical_log_prob_matches_torch_categorical() -> None:
    logits, index = torch.randn(6, 4), torch.tensor([0, 3, 1, 2, 3, 0])
    expected = torch.distributions.Categorical(logits=logits).log_prob(index)
    one_hot = torch.nn.functional.one_hot(index, 4).float()
    assert torch.allclose(losses.categorical_log_prob(logits, one_hot), expected, atol=1e-6)
    # the discrete AWR loss: −mean(w · log π(a|s)), here by hand for logits [0, ln 3] (π = [¼, ¾])
    head = losses.Categorical(torch.tensor([[0.0, math.log(3.0)]] * 2))
    loss = losses.awr_policy_loss(head, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([2.0, 1.0]))
    assert loss.item() == pytest.approx(-(2.0 * math.log(0.25) + math.log(0.75)) / 2, rel=1e-6)


def test_cosine_decay_ends_at_zero() -> None:
    assert losses.cosine_decay(0, 100) == 1.0
    assert losses.cosine_decay(50, 100) == pytest.approx(0.5)
    assert losses.cosine_decay(100, 100) == 0.0
    assert losses.cosine_decay(150, 100) == 0.0

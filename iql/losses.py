"""The loss terms of IQL as pure functions (Kostrikov, Nair & Levine, 2021, Eqs. 5-7).

Every function takes tensors and returns a scalar loss or a tensor of weights/targets; none holds state or
touches a network, so each can be checked against the paper's formula in isolation.
Shapes: B = batch size, A = action dimension, E = critic ensemble size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class Categorical(NamedTuple):
    """The output of a categorical policy head: unnormalised log-probabilities (B, n) over n discrete actions."""

    logits: Tensor


def expectile_loss(diff: Tensor, expectile: float | Tensor) -> Tensor:
    """Asymmetric squared loss L₂^τ(u) = |τ − 1(u < 0)| · u², averaged (paper Eq. 5).

    ``diff`` is u = target − prediction, any shape. With τ > 0.5 the minimiser of E[L₂^τ(y − v)] over v is an
    *upper* expectile of y: under-estimates (u > 0) cost τ, over-estimates cost 1 − τ.
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def value_loss(target_q: Tensor, value: Tensor, expectile: float | Tensor) -> Tensor:
    """L_V = E[L₂^τ(Q̂(s,a) − V(s))]; ``target_q`` (B,) is min over the target critics, ``value`` (B,) is V(s)."""
    return expectile_loss(target_q - value, expectile)


def td_target(rewards: Tensor, terminals: Tensor, next_value: Tensor, discount: float | Tensor) -> Tensor:
    """Bellman target r + γ · (1 − terminal) · V(s'), all (B,). ``terminals`` are terminations, never truncations."""
    return rewards + discount * (1.0 - terminals) * next_value


def critic_loss(q_values: Tensor, target: Tensor) -> Tensor:
    """Σ_i E[(Q_i(s,a) − target)²] over the ensemble (paper Eq. 6); ``q_values`` (E, B), ``target`` (B,)."""
    return (q_values - target).square().mean(dim=1).sum()


def awr_weights(advantage: Tensor, beta: float | Tensor, max_weight: float) -> Tensor:
    """Advantage weights min(exp(β · A), max_weight), (B,) → (B,) (paper Eq. 7).

    β is an inverse temperature: it *multiplies* the advantage, so β = 0 gives unit weights (behaviour cloning).
    The clip is applied before the exponential, so large advantages cannot overflow to inf.
    """
    return torch.exp(torch.clamp(beta * advantage, max=math.log(max_weight)))


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log N(actions; mean, exp(log_std)²) summed over action dimensions: (B, A), (A,) or (B, A), (B, A) → (B,)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2.0 * math.pi)).sum(dim=-1)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) of one-hot ``actions`` (B, n) under ``logits`` (B, n) → (B,)."""
    return (torch.log_softmax(logits, dim=-1) * actions).sum(dim=-1)


def weighted_log_likelihood_loss(log_prob: Tensor, weights: Tensor) -> Tensor:
    """AWR policy loss −E[w · log π(a|s)] for a stochastic policy; both (B,)."""
    return -(weights * log_prob).mean()


def weighted_mse_loss(predicted_actions: Tensor, actions: Tensor, weights: Tensor) -> Tensor:
    """AWR loss of a deterministic policy E[w · ‖π(s) − a‖²]; actions (B, A), weights (B,)."""
    return (weights * (predicted_actions - actions).square().sum(dim=-1)).mean()


def awr_policy_loss(
    policy_output: Categorical | tuple[Tensor, Tensor] | Tensor, actions: Tensor, weights: Tensor
) -> Tensor:
    """AWR loss of any policy head from its forward output; weights (B,).

    ``Categorical`` (discrete actions, one-hot (B, n)): weighted log-likelihood of the dataset action.
    (mean (B, A), log_std (A,)) of the Gaussian policy: weighted log-likelihood. Actions (B, A) of the deterministic
    policy: weighted MSE.
    """
    if isinstance(policy_output, Categorical):
        return weighted_log_likelihood_loss(categorical_log_prob(policy_output.logits, actions), weights)
    if isinstance(policy_output, tuple):
        mean, log_std = policy_output
        return weighted_log_likelihood_loss(gaussian_log_prob(mean, log_std, actions), weights)
    return weighted_mse_loss(policy_output, actions, weights)


def cosine_decay(step: int, total_steps: int) -> float:
    """Learning-rate factor 0.5 · (1 + cos(π · step / total)), 1 at step 0 and 0 from ``total_steps`` on."""
    progress = min(step, total_steps) / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress))

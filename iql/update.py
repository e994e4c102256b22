"""The one definition of IQL's and BC's gradient step, for every way of running it.

    metrics = iql_update(nets, batch, hyper)   # V, then π with the new V, then Q from the new V, then Polyak

``nets`` binds the step to parameters and an optimiser: ``EagerNetworks`` (below) calls the modules and steps
their ``torch.optim.Adam`` (the fused kernel); ``iql.compiled`` binds the same modules to aliases of their
parameters, differentiates with ``torch.func`` and runs Adam's arithmetic, and ``torch.compile`` turns this same
function into one graph. Which loss, in which order, on which inputs is written here and nowhere else (the
official JAX code has the same shape: one ``update`` that ``jit`` wraps).
Shapes: B = batch size, O = observation dimension, A = action dimension, E = critic ensemble size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from iql import losses
from iql.config import AlgorithmConfig

Forward = Callable[..., Any]  # a network applied to its inputs, differentiable in the parameters being stepped
Objective = Callable[[Forward], tuple[Tensor, Any]]  # forward → (scalar loss, diagnostics kept from the forward)


@dataclass
class Batch:
    """A minibatch of transitions, all on one device, float32.

    obs, next_obs (B, O); actions (B, A) in [−1, 1], or one-hot (B, n) for n discrete actions; rewards (B,) after
    the reward transform; terminals (B,) 1.0 where the episode *terminated* at this step (truncations are 0).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminals: Tensor


@dataclass(frozen=True)
class Hyperparameters:
    """The constants of a step. τ, β and γ are 0-d tensors on the learner's device, so that learners that differ
    only in them share one compiled graph shape (and a batch of learners can carry one value each)."""

    expectile: Tensor  # τ
    beta: Tensor  # inverse temperature
    discount: Tensor  # γ
    exp_adv_max: float  # clip of the AWR weight
    polyak_rate: float

    @classmethod
    def of(cls, algorithm: AlgorithmConfig, device: torch.device) -> Hyperparameters:
        def scalar(value: float) -> Tensor:
            return torch.tensor(value, dtype=torch.float32, device=device)

        return cls(
            scalar(algorithm.expectile),
            scalar(algorithm.beta),
            scalar(algorithm.discount),
            algorithm.exp_adv_max,
            algorithm.polyak_rate,
        )


class Networks(Protocol):
    """The networks of a learner (``critic``, ``target_critic``, ``value``, ``actor``), bound to their parameters."""

    def __call__(self, name: str, *inputs: Tensor) -> Any:
        """Network ``name`` with its current parameters (called under ``torch.no_grad``)."""
        ...

    def gradient_step(self, name: str, objective: Objective) -> tuple[Tensor, Any]:
        """One Adam step of network ``name`` on ``objective``'s loss; returns (detached loss, diagnostics)."""
        ...

    def polyak_(self, rate: float) -> None:
        """target_critic ← (1 − rate) · target_critic + rate · critic, in place."""
        ...


def iql_update(nets: Networks, batch: Batch, hp: Hyperparameters) -> dict[str, Tensor]:
    """One IQL step in the official order: V, then π with the new V, then Q with a target from the new V, then
    Polyak on the target critics. Returns the metrics of ``iql_metrics``."""
    obs, actions = batch.obs, batch.actions
    with torch.no_grad():
        target_q = nets("target_critic", obs, actions).min(dim=0).values  # Q̂(s, a) (B,)

    def value_objective(value_net: Forward) -> tuple[Tensor, Tensor]:
        value = value_net(obs)
        return losses.value_loss(target_q, value, hp.expectile), value.detach()  # τ: L₂^τ(Q̂ − V), Eq. 5

    value_loss, value = nets.gradient_step("value", value_objective)

    with torch.no_grad():  # the updated V at s and s', in one forward pass
        new_value, next_value = nets("value", torch.cat([obs, batch.next_obs])).chunk(2)
        advantage = target_q - new_value
        weights = losses.awr_weights(advantage, hp.beta, hp.exp_adv_max)  # β: min(exp(β · A), clip), Eq. 7
        target = losses.td_target(batch.rewards, batch.terminals, next_value, hp.discount)  # r + γ(1 − d)V(s')

    actor_loss, _ = nets.gradient_step("actor", policy_objective(obs, actions, weights))

    def critic_objective(critic: Forward) -> tuple[Tensor, Tensor]:
        q_values = critic(obs, actions)
        return losses.critic_loss(q_values, target), q_values.detach()  # Σ_i (Q_i − target)², Eq. 6

    critic_loss, q_values = nets.gradient_step("critic", critic_objective)
    nets.polyak_(hp.polyak_rate)
    return iql_metrics(value_loss, critic_loss, actor_loss, q_values, value, advantage, weights, hp.exp_adv_max)


def bc_update(nets: Networks, batch: Batch, hp: Hyperparameters) -> dict[str, Tensor]:
    """One behaviour-cloning step: the policy objective of ``iql_update`` with unit weights (β = 0)."""
    actor_loss, _ = nets.gradient_step(
        "actor", policy_objective(batch.obs, batch.actions, torch.ones_like(batch.rewards))
    )
    return {"actor_loss": actor_loss}


def policy_objective(obs: Tensor, actions: Tensor, weights: Tensor) -> Objective:
    """The AWR loss of the policy head, obs (B, O), actions (B, A), weights (B,)."""
    return lambda actor: (losses.awr_policy_loss(actor(obs), actions, weights), ())


def iql_metrics(
    value_loss: Tensor,
    critic_loss: Tensor,
    actor_loss: Tensor,
    q_values: Tensor,
    value: Tensor,
    advantage: Tensor,
    weights: Tensor,
    exp_adv_max: float,
) -> dict[str, Tensor]:
    """What an IQL update reports, as 0-d device tensors: the three losses, mean Q (E, B), V (B,), advantage (B,),
    AWR weight (B,), and the fraction of weights at the clip."""
    return {
        "value_loss": value_loss,
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "q_mean": q_values.mean(),
        "v_mean": value.mean(),
        "advantage_mean": advantage.mean(),
        "weight_mean": weights.mean(),
        "weight_clipped_frac": (weights >= exp_adv_max).float().mean(),
    }


class EagerNetworks:
    """``Networks`` as plain modules and their ``torch.optim.Adam``: autograd, ``backward``, ``optimizer.step``."""

    def __init__(self, modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        self.modules, self.optimizers = modules, optimizers
        # Polyak pairs, listed once: load_state_dict copies into these same tensors
        self.target_params: list[Tensor] = [*modules["target_critic"].parameters()] if "critic" in modules else []
        self.online_params: list[Tensor] = [*modules["critic"].parameters()] if "critic" in modules else []

    def __call__(self, name: str, *inputs: Tensor) -> Any:
        return self.modules[name](*inputs)

    def gradient_step(self, name: str, objective: Objective) -> tuple[Tensor, Any]:
        loss, diagnostics = objective(self.modules[name])
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), diagnostics

    def polyak_(self, rate: float) -> None:
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.online_params, rate)

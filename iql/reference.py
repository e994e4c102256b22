"""IQL as common eager PyTorch ports write it: the baseline of ``benchmarks/update_speed.py`` and a test oracle.

Three separate modules with their own default Adam (twin Q as two MLPs with two target copies, V, π), the policy
log-likelihood through ``torch.distributions.Normal``, Polyak averaging as a Python loop over parameters and
``.item()`` on every loss every step. It runs the algorithm of ``IQL_REFERENCE.md`` in the official order
(V → π with the new V → Q with the new V → Polyak), so it computes what ``IQLLearner.update`` computes; only the
way it is written differs. Not used for training.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from iql.config import AlgorithmConfig


def reference_mlp(in_dim: int, out_dim: int, hidden_dims: list[int]) -> nn.Sequential:
    """Linear → ReLU → ... → Linear with PyTorch's default initialisation."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class ReferencePolicy(nn.Module):
    """π(a|s) = N(tanh(μ(s)), exp(log_std)²) with a state-independent log-std, as a ``torch.distributions.Normal``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: list[int], a: AlgorithmConfig) -> None:
        super().__init__()
        self.net = reference_mlp(obs_dim, act_dim, hidden_dims)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = a.log_std_min, a.log_std_max

    def forward(self, obs: Tensor) -> torch.distributions.Normal:
        mean = torch.tanh(self.net(obs))
        return torch.distributions.Normal(mean, self.log_std.clamp(self.log_std_min, self.log_std_max).exp())


class ReferenceIQL:
    """Eager IQL in the style of common ports; ``update`` takes (B, O), (B, A), (B,), (B, O), (B,) tensors."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        algorithm: AlgorithmConfig,
        hidden_dims: list[int],
        total_steps: int,
        device: torch.device | str = "cpu",
    ) -> None:
        a = self.algorithm = algorithm
        self.q1 = reference_mlp(obs_dim + act_dim, 1, hidden_dims).to(device)
        self.q2 = reference_mlp(obs_dim + act_dim, 1, hidden_dims).to(device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.vf = reference_mlp(obs_dim, 1, hidden_dims).to(device)
        self.actor = ReferencePolicy(obs_dim, act_dim, hidden_dims, a).to(device)
        self.q_optimizer = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=a.critic_lr)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=a.value_lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=a.actor_lr)
        self.actor_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, total_steps)

    def update(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, dones: Tensor) -> dict:
        a = self.algorithm
        obs_actions = torch.cat([obs, actions], dim=-1)
        with torch.no_grad():
            target_q = torch.min(self.q1_target(obs_actions), self.q2_target(obs_actions)).squeeze(-1)

        v = self.vf(obs).squeeze(-1)
        diff = target_q - v
        v_loss = (torch.abs(a.expectile - (diff < 0).float()) * diff**2).mean()
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()

        with torch.no_grad():
            adv = target_q - self.vf(obs).squeeze(-1)
            next_v = self.vf(next_obs).squeeze(-1)
        exp_adv = torch.exp(a.beta * adv).clamp(max=a.exp_adv_max)
        log_prob = self.actor(obs).log_prob(actions).sum(-1)
        actor_loss = -(exp_adv * log_prob).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_scheduler.step()

        targets = rewards + (1.0 - dones) * a.discount * next_v
        q1, q2 = self.q1(obs_actions).squeeze(-1), self.q2(obs_actions).squeeze(-1)
        q_loss = ((q1 - targets) ** 2).mean() + ((q2 - targets) ** 2).mean()
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()

        with torch.no_grad():
            for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for param, target_param in zip(net.parameters(), target.parameters(), strict=True):
                    target_param.data.mul_(1.0 - a.polyak_rate).add_(a.polyak_rate * param.data)
        return {"value_loss": v_loss.item(), "actor_loss": actor_loss.item(), "critic_loss": q_loss.item()}

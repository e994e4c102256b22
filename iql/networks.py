"""Networks of IQL: batched critic ensembles, the value net and the policy heads (continuous and discrete).

All layers use the official orthogonal initialisation (gain √2, zero bias). Shapes: B = batch, O = observation
dimension, A = action dimension, E = ensemble size. Continuous actions live in [−1, 1] (the data module rescales);
discrete actions are one-hot (B, n).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from iql.config import NetworkConfig
from iql.losses import Categorical

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
INIT_GAIN = math.sqrt(2.0)


class EnsembleLinear(nn.Module):
    """E independent affine maps applied in one batched matmul: (E, B, in) → (E, B, out)."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        weight = torch.empty(ensemble_size, out_features, in_features)
        for index in range(ensemble_size):  # each member initialised like an nn.Linear of its own
            nn.init.orthogonal_(weight[index], gain=INIT_GAIN)
        self.weight = nn.Parameter(weight.transpose(1, 2).contiguous())  # (E, in, out)
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def _linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.orthogonal_(layer.weight, gain=INIT_GAIN)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(
    in_features: int,
    out_features: int,
    cfg: NetworkConfig,
    *,
    ensemble_size: int | None = None,
    layer_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Hidden layers of ``cfg.hidden_dims`` with activation (+ LayerNorm, + dropout), then a linear output."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in cfg.hidden_dims:
        layers.append(_linear(width, hidden) if ensemble_size is None else EnsembleLinear(ensemble_size, width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(ACTIVATIONS[cfg.activation]())
        if dropout > 0.0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(
        _linear(width, out_features) if ensemble_size is None else EnsembleLinear(ensemble_size, width, out_features)
    )
    return nn.Sequential(*layers)


class CriticEnsemble(nn.Module):
    """Q_1..Q_E(s, a) as one module: obs (B, O), actions (B, A) → (E, B)."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.ensemble_size = cfg.num_critics
        self.net = mlp(obs_dim + act_dim, 1, cfg, ensemble_size=cfg.num_critics, layer_norm=cfg.layer_norm)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        x = torch.cat([obs, actions], dim=-1).expand(self.ensemble_size, -1, -1)
        return self.net(x).squeeze(-1)


class DiscreteCriticEnsemble(nn.Module):
    """Q_1..Q_E over n discrete actions, one output per action: obs (B, O), one-hot actions (B, n) → (E, B),
    each member's Q at the given action. The same interface as ``CriticEnsemble``, so the update is the same."""

    def __init__(self, obs_dim: int, num_actions: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.ensemble_size = cfg.num_critics
        self.net = mlp(obs_dim, num_actions, cfg, ensemble_size=cfg.num_critics, layer_norm=cfg.layer_norm)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        q_all = self.net(obs.expand(self.ensemble_size, -1, -1))  # (E, B, n)
        return (q_all * actions).sum(dim=-1)


class ValueNet(nn.Module):
    """V(s): obs (B, O) → (B,)."""

    def __init__(self, obs_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, cfg, layer_norm=cfg.layer_norm)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class GaussianPolicy(nn.Module):
    """π(a|s) = N(tanh(μ(s)), exp(log_std)²) with a state-independent log-std (not a tanh-squashed distribution).

    ``forward`` returns the mean (B, A) in [−1, 1] and the clipped log-std (A,).
    """

    def __init__(
        self, obs_dim: int, act_dim: int, cfg: NetworkConfig, log_std_min: float = -5.0, log_std_max: float = 2.0
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, cfg, dropout=cfg.actor_dropout)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(self.net(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def mean_action(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs))

    def sample_action(self, obs: Tensor, generator: torch.Generator, scale: float = 1.0) -> Tensor:
        """a ~ N(tanh(μ(s)), (scale · exp(log_std))²): (B, O) → (B, A), not clipped (the official
        ``sample_actions``, whose temperature is ``scale``)."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + scale * log_std.exp() * noise


class DeterministicPolicy(nn.Module):
    """a = tanh(μ(s)): obs (B, O) → (B, A) in [−1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, cfg, dropout=cfg.actor_dropout)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs))

    def mean_action(self, obs: Tensor) -> Tensor:
        return self.forward(obs)

    def sample_action(self, obs: Tensor, generator: torch.Generator, scale: float = 0.1) -> Tensor:
        """tanh(μ(s)) + N(0, scale²) exploration noise (CORL's ``expl_noise``): (B, O) → (B, A), not clipped."""
        action = self(obs)
        return action + scale * torch.randn(action.shape, generator=generator, device=action.device, dtype=action.dtype)


class CategoricalPolicy(nn.Module):
    """π(a|s) = softmax(logits(s)) over n discrete actions: obs (B, O) → ``Categorical`` logits (B, n)."""

    def __init__(self, obs_dim: int, num_actions: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.net = mlp(obs_dim, num_actions, cfg, dropout=cfg.actor_dropout)

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(self.net(obs))

    def mean_action(self, obs: Tensor) -> Tensor:
        """The greedy action, one-hot (B, n): argmax of the logits."""
        logits = self.net(obs)
        return nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)

    def sample_action(self, obs: Tensor, generator: torch.Generator, scale: float = 1.0) -> Tensor:
        """An action drawn from softmax(logits(s) / scale), one-hot (B, n); ``scale`` is a temperature."""
        logits = self.net(obs)
        index = torch.multinomial(torch.softmax(logits / scale, dim=-1), 1, generator=generator).squeeze(-1)
        return nn.functional.one_hot(index, logits.shape[-1]).to(logits.dtype)

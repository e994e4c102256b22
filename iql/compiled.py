"""The learner's whole update as one pure function of tensors, compiled by ``torch.compile`` into a single graph.

``IQLLearner.update`` is the readable definition: autograd, ``torch.optim.Adam``, one network at a time. Here the
same step (the same ``iql.losses`` terms, the same order V → π → Q → Polyak, Adam's arithmetic) is one function
that ``torch.func`` differentiates and Inductor compiles, so an update is a single call with no Python between its
kernels. It reads and writes the learner's own parameters and Adam state in place: checkpoints, ``act`` and a later
eager update see exactly what the eager update would have left (``tests/test_fast_update.py`` checks this).

    update = CompiledUpdate(learner)      # compiles on its first call (20-40 s on a 2-core CPU)
    metrics = update(batch)               # == learner's eager update, to float tolerance
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from iql import losses
from iql.errors import CompileError
from iql.learner import Batch, BCLearner, IQLLearner, iql_metrics

Params = dict[str, Tensor]


@dataclass
class AdamSlot:
    """One network and its ``torch.optim.Adam``: the tensors the compiled step reads and updates in place.

    ``params`` are detached aliases of the module's parameters; ``exp_avgs``/``exp_avg_sqs`` are the optimiser's own
    state tensors (created here if the optimiser has not stepped yet, exactly as Adam would create them).
    """

    module: nn.Module
    optimizer: torch.optim.Adam
    params: Params
    exp_avgs: Params
    exp_avg_sqs: Params
    steps: list[Tensor]  # Adam's per-parameter step counters, advanced by the host after each call
    betas: tuple[float, float]
    eps: float

    @classmethod
    def bind(cls, module: nn.Module, optimizer: torch.optim.Adam) -> AdamSlot:
        group = optimizer.param_groups[0]
        unsupported = {k: group[k] for k in ("amsgrad", "maximize", "weight_decay") if group[k]}
        if len(optimizer.param_groups) != 1 or unsupported:
            raise ValueError(f"the compiled update implements plain Adam only; got {unsupported or 'several groups'}")
        named = dict(module.named_parameters())
        for param in named.values():
            state = optimizer.state[param]
            if not state:  # the layout torch.optim.Adam gives a fresh state, fused or not
                state["step"] = torch.tensor(0.0, dtype=torch.float32, device=param.device)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return cls(
            module=module,
            optimizer=optimizer,
            params={name: p.detach() for name, p in named.items()},
            exp_avgs={name: optimizer.state[p]["exp_avg"] for name, p in named.items()},
            exp_avg_sqs={name: optimizer.state[p]["exp_avg_sq"] for name, p in named.items()},
            steps=[optimizer.state[p]["step"] for p in named.values()],
            betas=tuple(group["betas"]),  # read here: the compiled step must not touch the optimiser (see adam_)
            eps=float(group["eps"]),
        )

    def step_scalars(self, step: int) -> tuple[float, float]:
        """Adam's (lr / (1 − β₁ᵗ), √(1 − β₂ᵗ)) for update number ``step`` (1-based), at the group's current lr."""
        beta1, beta2 = self.betas
        return float(self.optimizer.param_groups[0]["lr"]) / (1.0 - beta1**step), math.sqrt(1.0 - beta2**step)

    def adam_(self, grads: Params, scalars: Tensor) -> None:
        """Adam in place on ``params`` (torch.optim.Adam's formula); ``scalars`` (2,) from ``step_scalars``.

        The bias corrections come in as a tensor computed on the host: inside the graph Inductor would recompute
        their ``pow`` for every vector of every parameter, which made Adam cost more than all of autograd. Nor is
        the lr read here: Dynamo guards on an optimiser's whole ``param_groups``, so a scheduled lr would recompile.
        """
        (beta1, beta2), eps = self.betas, self.eps
        step_size, bias_correction2_sqrt = scalars[0], scalars[1]
        for name, param in self.params.items():
            grad, exp_avg, exp_avg_sq = grads[name], self.exp_avgs[name], self.exp_avg_sqs[name]
            exp_avg.lerp_(grad, 1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            param.sub_(step_size * exp_avg / (exp_avg_sq.sqrt() / bias_correction2_sqrt + eps))

    def gradient_step(self, loss_fn: Callable[[Params], Any], scalars: Tensor, has_aux: bool = False) -> Any:
        """Differentiate ``loss_fn(params) → loss`` (or ``(loss, aux)``), take one Adam step, return its value."""
        grads, value = grad_and_value(loss_fn, has_aux=has_aux)(self.params)
        self.adam_(grads, scalars)
        return value

    def __call__(self, params: Params, *args: Tensor) -> Any:
        """The network's forward with ``params`` (differentiable) in place of its own."""
        return functional_call(self.module, params, args)


def _policy_loss(actor: AdamSlot, params: Params, obs: Tensor, actions: Tensor, weights: Tensor) -> Tensor:
    return losses.awr_policy_loss(actor(params, obs), actions, weights)


def _own_code_copy(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` bound to the same instance, but running on a fresh copy of its code object."""
    func = method.__func__  # type: ignore[attr-defined]
    code = func.__code__.replace()  # equal, but a distinct object
    clone = types.FunctionType(code, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    return types.MethodType(clone, method.__self__)  # type: ignore[attr-defined]


class CompiledUpdate:
    """``learner.update`` (IQL or BC) as one ``torch.compile``d graph; same metrics, same parameter changes."""

    def __init__(self, learner: BCLearner) -> None:
        self.learner = learner
        self.bind()
        # The step runs on this instance's own copy of its code object: Dynamo keeps one cache per code object, so
        # no other learner in the process (the next job of a sequential sweep, say) can match this learner's graph
        # with its τ, β or activation baked in. That makes it safe to keep only the tensor guards, which saves
        # ~0.3 ms a call on CPU (the modules' attribute guards); the modules are fixed for the learner's life.
        # CUDA graphs are not used: untested here (no GPU was available).
        step_fn = _own_code_copy(self._iql_step if isinstance(learner, IQLLearner) else self._bc_step)
        keep_tensor_guards = getattr(torch.compiler, "keep_tensor_guards_unsafe", None)
        options = {"guard_filter_fn": keep_tensor_guards} if keep_tensor_guards is not None else None
        self._compiled = torch.compile(step_fn, dynamic=False, fullgraph=True, options=options)
        self._built = False  # compilation happens in the first call

    def bind(self) -> None:
        """(Re)collect the tensors to update; call after ``load_state_dict`` replaced the optimiser state."""
        learner = self.learner
        self.actor = AdamSlot.bind(learner.actor, learner.actor_optimizer)
        self.slots = [self.actor]
        if isinstance(learner, IQLLearner):
            self.value = AdamSlot.bind(learner.value, learner.value_optimizer)
            self.critic = AdamSlot.bind(learner.critic, learner.critic_optimizer)
            self.target_critic = learner.target_critic
            self.target_params = {name: p.detach() for name, p in self.target_critic.named_parameters()}
            self.slots = [self.value, self.actor, self.critic]

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        learner = self.learner
        step = learner.step + 1  # every optimiser steps once per update, so their step counts equal the learner's
        scalars = torch.tensor([slot.step_scalars(step) for slot in self.slots], device=learner.device)
        inputs = (batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminals, scalars)
        metrics = self._compiled(*inputs) if self._built else self._first_call(*inputs)
        torch._foreach_add_([s for slot in self.slots for s in slot.steps], 1.0)
        with warnings.catch_warnings():  # it cannot see that the graph stepped the actor's optimiser
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            learner.actor_scheduler.step()
        learner.step = step
        return metrics

    def _first_call(self, *inputs: Tensor) -> dict[str, Tensor]:
        """The call that compiles: a failure here (no C++ compiler for Inductor on CPU, no Triton on CUDA, an op
        Dynamo cannot trace) becomes one clear ``CompileError`` instead of a traceback from inside Inductor."""
        try:
            metrics = self._compiled(*inputs)
        except Exception as error:
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise CompileError(
                f"hardware.compile=true, but torch.compile could not build the update on this machine: "
                f"{type(error).__name__}: {reason[:300]}. On CPU Inductor needs a C++ compiler (g++, or the one "
                "$CXX names); on CUDA, Triton. Install it, or run with hardware.compile=false (the same update, "
                "eager). HYDRA_FULL_ERROR=1 shows the full traceback."
            ) from error
        self._built = True
        return metrics

    def _bc_step(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, terminals: Tensor, scalars: Tensor
    ) -> dict[str, Tensor]:
        weights = torch.ones_like(rewards)
        actor_loss = self.actor.gradient_step(lambda p: _policy_loss(self.actor, p, obs, actions, weights), scalars[0])
        return {"actor_loss": actor_loss}

    def _iql_step(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, terminals: Tensor, scalars: Tensor
    ) -> dict[str, Tensor]:
        """IQLLearner.update's step: V, then π with the new V, then Q with a target from the new V, then Polyak."""
        a = self.learner.algorithm
        target_q = functional_call(self.target_critic, self.target_params, (obs, actions)).min(dim=0).values

        def value_objective(p: Params) -> tuple[Tensor, Tensor]:
            value = self.value(p, obs)
            return losses.value_loss(target_q, value, a.expectile), value.detach()

        value_loss, value = self.value.gradient_step(value_objective, scalars[0], has_aux=True)

        new_value, next_value = self.value(self.value.params, torch.cat([obs, next_obs])).chunk(2)
        advantage = target_q - new_value
        target = losses.td_target(rewards, terminals, next_value, a.discount)
        weights = losses.awr_weights(advantage, a.beta, a.exp_adv_max)
        actor_loss = self.actor.gradient_step(lambda p: _policy_loss(self.actor, p, obs, actions, weights), scalars[1])

        def critic_objective(p: Params) -> tuple[Tensor, Tensor]:
            q_values = self.critic(p, obs, actions)
            return losses.critic_loss(q_values, target), q_values.detach()

        critic_loss, q_values = self.critic.gradient_step(critic_objective, scalars[2], has_aux=True)
        torch._foreach_lerp_(list(self.target_params.values()), list(self.critic.params.values()), a.polyak_rate)
        return iql_metrics(value_loss, critic_loss, actor_loss, q_values, value, advantage, weights, a)

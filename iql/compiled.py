"""``iql.update``'s step as one ``torch.compile``d graph: the same function, bound to functional networks.

Eager mode runs the step with autograd and ``torch.optim.Adam``. Here the step's networks are the learner's
modules applied (``functional_call``) to detached aliases of their parameters; ``torch.func`` differentiates each
objective and Adam's arithmetic updates the aliases and the optimiser's own state tensors in place, so Inductor
compiles the whole update into one call with no Python between its kernels. Checkpoints, ``act`` and a later
eager update see exactly what the eager update would have left (``tests/test_fast_update.py`` checks this).

    update = CompiledUpdate(learner)      # compiles on its first call (20-40 s on a 2-core CPU)
    metrics = update(batch)               # == the eager update, to float tolerance

With ``cuda_graphs=True`` (``hardware.cuda_graphs``) the graph is compiled as ``mode="reduce-overhead"`` would: on a
GPU, Inductor's CUDA-graph trees record the update once and replay it, one launch per update. The tensors the step
updates in place (parameters, Adam moments, target critics) are marked static, so the graph reads and writes them
where they live instead of copying them in and out; outputs live in the graph's memory pool and are overwritten by
the next replay, so the metrics are cloned out of it (the experiment keeps several updates' metrics: its running
sums and the online phase's updates per environment step). On a CPU torch skips the graph: the plain compiled step.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from iql.errors import CompileError
from iql.update import Batch, Objective

if TYPE_CHECKING:
    from iql.learner import BCLearner

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
        (``torch._fused_adam_`` cannot run inside a compiled graph.)
        """
        (beta1, beta2), eps = self.betas, self.eps
        step_size, bias_correction2_sqrt = scalars[0], scalars[1]
        for name, param in self.params.items():
            grad, exp_avg, exp_avg_sq = grads[name], self.exp_avgs[name], self.exp_avg_sqs[name]
            exp_avg.lerp_(grad, 1.0 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            param.sub_(step_size * exp_avg / (exp_avg_sq.sqrt() / bias_correction2_sqrt + eps))


@dataclass
class FunctionalNetworks:
    """``iql.update.Networks`` over parameter aliases: ``torch.func`` gradients and in-graph Adam.

    Built inside the compiled function for each call: ``scalars`` (slots, 2) are this update's Adam scalars, in the
    order of ``slots``.
    """

    slots: dict[str, AdamSlot]
    frozen: dict[str, tuple[nn.Module, Params]]  # networks that are not stepped (the target critics)
    scalars: Tensor

    def __call__(self, name: str, *inputs: Tensor) -> Any:
        module, params = (self.slots[name].module, self.slots[name].params) if name in self.slots else self.frozen[name]
        return functional_call(module, params, inputs)

    def gradient_step(self, name: str, objective: Objective) -> tuple[Tensor, Any]:
        slot = self.slots[name]

        def loss_of(params: Params) -> tuple[Tensor, Any]:
            return objective(lambda *inputs: functional_call(slot.module, params, inputs))

        grads, (loss, diagnostics) = grad_and_value(loss_of, has_aux=True)(slot.params)
        slot.adam_(grads, self.scalars[list(self.slots).index(name)])
        return loss, diagnostics

    def polyak_(self, rate: float) -> None:
        _, target = self.frozen["target_critic"]
        torch._foreach_lerp_(list(target.values()), list(self.slots["critic"].params.values()), rate)


def _own_code_copy(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` bound to the same instance, but running on a fresh copy of its code object."""
    func = method.__func__  # type: ignore[attr-defined]
    code = func.__code__.replace()  # equal, but a distinct object
    clone = types.FunctionType(code, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    return types.MethodType(clone, method.__self__)  # type: ignore[attr-defined]


class CompiledUpdate:
    """The learner's ``update_fn`` as one ``torch.compile``d graph; same metrics, same parameter changes."""

    def __init__(self, learner: BCLearner, cuda_graphs: bool = False) -> None:
        self.learner = learner
        self.cuda_graphs = cuda_graphs
        self.bind()
        # The step runs on this instance's own copy of its code object: Dynamo keeps one cache per code object, so
        # no other learner in the process (the next job of a sequential sweep, say) can match this learner's graph
        # with its modules and constants baked in. That makes it safe to keep only the tensor guards, which saves
        # ~0.3 ms a call on CPU (the modules' attribute guards); the modules are fixed for the learner's life.
        # torch.compile takes a mode or options, not both: CUDA graphs are asked for with the one option that
        # mode="reduce-overhead" sets (torch._inductor.list_mode_options()).
        keep_tensor_guards = getattr(torch.compiler, "keep_tensor_guards_unsafe", None)
        options: dict[str, Any] = {"guard_filter_fn": keep_tensor_guards} if keep_tensor_guards is not None else {}
        if cuda_graphs:
            options["triton.cudagraphs"] = True
        step_fn = _own_code_copy(self._step)
        self._compiled = torch.compile(step_fn, dynamic=False, fullgraph=True, options=options or None)
        self._built = False  # compilation happens in the first call

    def bind(self) -> None:
        """(Re)collect the tensors to update; call after ``load_state_dict`` replaced the optimiser state."""
        modules = self.learner.modules()
        self.slots = {
            name: AdamSlot.bind(modules[name], optimizer) for name, optimizer in self.learner.step_optimizers().items()
        }
        self.frozen = {
            name: (module, {key: p.detach() for key, p in module.named_parameters()})
            for name, module in modules.items()
            if name not in self.slots
        }
        if self.cuda_graphs:
            # CUDA-graph trees replay a graph only if every input it mutates is static (its address fixed): these
            # are. After a load_state_dict the Adam moments are new tensors at new addresses: the graph re-records.
            stepped = [(slot.params, slot.exp_avgs, slot.exp_avg_sqs) for slot in self.slots.values()]
            for tensors in [*(group for groups in stepped for group in groups), *(p for _, p in self.frozen.values())]:
                for tensor in tensors.values():
                    torch._dynamo.mark_static_address(tensor, guard=False)

    def __call__(self, batch: Batch) -> dict[str, Tensor]:
        """One update; the caller advances the learner's step and schedule after it."""
        step = self.learner.step + 1  # every optimiser steps once per update, so their step counts equal the learner's
        scalars = self._scalars([slot.step_scalars(step) for slot in self.slots.values()])
        inputs = (batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminals, scalars)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are dead: we cloned them
        metrics = self._compiled(*inputs) if self._built else self._first_call(*inputs)
        if self.cuda_graphs:  # out of the graph's pool, which the next replay overwrites: one stack, 0-d views
            metrics = dict(zip(metrics, torch.stack(list(metrics.values())).unbind(), strict=True))
        torch._foreach_add_([s for slot in self.slots.values() for s in slot.steps], 1.0)
        return metrics

    def _scalars(self, values: list[tuple[float, float]]) -> Tensor:
        """Adam's per-network scalars (slots, 2) on the learner's device. On CUDA through pinned memory and a
        non-blocking copy: a plain host-to-device copy waits for the GPU to finish all queued work (a host sync per
        update); the caching host allocator keeps the pinned block until the copy has run."""
        if self.learner.device.type != "cuda":
            return torch.tensor(values, device=self.learner.device)
        return torch.tensor(values, pin_memory=True).to(self.learner.device, non_blocking=True)

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

    def _step(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, terminals: Tensor, scalars: Tensor
    ) -> dict[str, Tensor]:
        nets = FunctionalNetworks(self.slots, self.frozen, scalars)
        batch = Batch(obs, actions, rewards, next_obs, terminals)
        return self.learner.update_fn(nets, batch, self.learner.hyperparameters)

"""Device-resident uniform sampling of minibatches: the whole dataset lives on the device, no DataLoader."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from iql.update import Batch


class DeviceSampler:
    """Holds prepared transitions as device tensors and draws batches with ``torch.randint`` on the device.

    Its generator is separate from torch's global RNG, so a resumed run draws exactly the batches it would have.
    """

    def __init__(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminals: np.ndarray,
        device: torch.device,
        seed: int,
    ) -> None:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32, device=device)

        self.data = Batch(put(obs), put(actions), put(rewards), put(next_obs), put(terminals))
        self.size = len(rewards)
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def sample(self, batch_size: int) -> Batch:
        """A batch of ``batch_size`` transitions drawn uniformly with replacement."""
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        d = self.data
        return Batch(d.obs[index], d.actions[index], d.rewards[index], d.next_obs[index], d.terminals[index])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

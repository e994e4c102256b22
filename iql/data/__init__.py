"""Offline data: Minari dataset → transitions → transforms → device-resident sampler; local dataset recipes."""

from iql.data.loading import PreparedData, open_dataset, prepare
from iql.data.sampler import DeviceSampler
from iql.data.transitions import Transitions, flatten_episodes

__all__ = ["DeviceSampler", "PreparedData", "Transitions", "flatten_episodes", "open_dataset", "prepare"]

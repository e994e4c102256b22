"""Did-you-mean for the command line: the valid config keys and group options closest to a mistyped one.

suggest_keys("algorithm.tau")          # ['algorithm.expectile'] (a known alias: τ is the expectile)
suggest_options("hopper-medium", ["hopper_medium", "hopper_expert"])   # ['hopper_medium']
"""

from __future__ import annotations

import dataclasses
import difflib
import typing

from iql.config import RunConfig

# What researchers type for a key, and where it lives here (named in messages, never accepted as keys)
ALIASES = {
    "tau": "algorithm.expectile",
    "τ": "algorithm.expectile",
    "expectile": "algorithm.expectile",
    "temperature": "algorithm.beta",
    "inverse_temperature": "algorithm.beta",
    "inv_temperature": "algorithm.beta",
    "beta": "algorithm.beta",
    "β": "algorithm.beta",
    "gamma": "algorithm.discount",
    "discount": "algorithm.discount",
    "polyak": "algorithm.polyak_rate",
    "target_update_rate": "algorithm.polyak_rate",
    "lr": "algorithm.actor_lr",
    "batch_size": "train.batch_size",
    "max_steps": "train.steps",
    "num_steps": "train.steps",
    "steps": "train.steps",
    "dropout": "network.actor_dropout",
    "critic_ensemble": "network.num_critics",
    "ensemble_size": "network.num_critics",
    "ensemble": "network.num_critics",
    "hidden": "network.hidden_dims",
    "hidden_sizes": "network.hidden_dims",
    "layer_sizes": "network.hidden_dims",
    "layernorm": "network.layer_norm",
    "eval_episodes": "eval.episodes",
    "n_episodes": "eval.episodes",
    "eval_freq": "train.eval_every",
    "eval_interval": "train.eval_every",
    "log_interval": "train.log_every",
    "save_freq": "train.checkpoint_every",
    "checkpoint_freq": "train.checkpoint_every",
    "normalize": "dataset.normalize_obs",
    "env": "dataset.eval_env",
    "dataset_id": "dataset.id",
    "online_iterations": "online.steps",
    "online_steps": "online.steps",
    "finetune_steps": "online.steps",
    "replay_buffer_size": "online.buffer_capacity",
    "buffer_size": "online.buffer_capacity",
}
ALIAS_NOTES = {"algorithm.expectile": "τ, the expectile", "algorithm.beta": "β, the inverse temperature"}


def schema_keys(schema: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the run schema: ``algorithm.expectile``, ``hardware.slurm.partition``, …"""
    hints = typing.get_type_hints(schema)
    keys: list[str] = []
    for field in dataclasses.fields(schema):
        sub = hints[field.name]
        if dataclasses.is_dataclass(sub):
            keys += schema_keys(sub, f"{prefix}{field.name}.")  # type: ignore[arg-type]
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def suggest_keys(key: str, limit: int = 3) -> list[str]:
    """The valid keys closest to ``key``: its known alias alone, else similar names in its section, then the same
    or a similar name in another section (``train.expectile`` → ``algorithm.expectile``)."""
    key = key.lstrip("+~")
    leaf = key.rpartition(".")[2]
    keys = schema_keys()
    if leaf in ALIASES:
        return [ALIASES[leaf]]
    section = key.rpartition(".")[0]
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == section}
    found = [siblings[name] for name in difflib.get_close_matches(leaf, list(siblings), limit, cutoff=0.7)]
    anywhere: dict[str, list[str]] = {}
    for k in keys:
        anywhere.setdefault(k.rpartition(".")[2], []).append(k)
    for name in difflib.get_close_matches(leaf, list(anywhere), limit, cutoff=0.8):
        found += anywhere[name]
    return list(dict.fromkeys(found))[:limit]


def describe_key(key: str) -> str:
    """``key`` with its meaning where it has a Greek name: ``algorithm.expectile (τ, the expectile)``."""
    note = ALIAS_NOTES.get(key)
    return f"{key} ({note})" if note else key


def suggest_options(option: str, options: list[str], limit: int = 3) -> list[str]:
    """The options of a config group closest to ``option``: the one it equals up to '-' and case, else those that
    contain it, then similar ones (``hopper-medium`` → ``mujoco_hopper_medium``)."""
    normalised = option.replace("-", "_").lower()
    exact = [o for o in options if o.lower() == normalised]
    containing = sorted((o for o in options if normalised in o.lower()), key=len)
    close = difflib.get_close_matches(normalised, options, limit, cutoff=0.6)
    return exact or list(dict.fromkeys(containing + close))[:limit]

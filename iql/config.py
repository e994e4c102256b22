"""Typed run configuration: one dataclass per Hydra config group, plus validation.

These dataclasses are the *schema* of ``conf/`` (``launch.py`` registers them with Hydra's ConfigStore) and the
only configuration the rest of the package sees: below ``launch.py`` nothing imports Hydra or OmegaConf.
The field comments are the documentation of every key a user can type (``algorithm.expectile=0.9``).
Defaults of real runs live in the yaml files of ``conf/``; the defaults here make a learner buildable in a test.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from iql.errors import ConfigError

ALGORITHMS = ("iql", "bc")
POLICIES = ("gaussian", "deterministic")
ACTOR_SCHEDULES = ("cosine", "constant")
ONLINE_ACTOR_SCHEDULES = ("constant", "cosine")
ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "silu")
REWARD_TRANSFORMS = ("none", "locomotion", "antmaze")
DEVICES = ("auto", "cpu", "cuda")
MATMUL_PRECISIONS = ("highest", "high", "medium")  # torch.set_float32_matmul_precision
LOGGER_BACKENDS = ("wandb", "none")
LOGGER_MODES = ("auto", "offline", "online", "disabled")
EVAL_SCORES = ("auto", "normalized_return", "success_rate")
SEED_LIMIT = 2**32  # numpy's seeds are 0 ≤ seed < 2**32
DATASET_ID_PATTERN = re.compile(r"^([\w.-]+/)*[\w.-]+-v\d+$")


@dataclass
class AlgorithmConfig:
    """IQL (or its BC baseline) hyperparameters; paper defaults are the locomotion column of Table 5."""

    name: str = "iql"  # iql | bc (behaviour cloning: the actor loss with unit weights, no critics)
    expectile: float = 0.7  # τ of the value loss, in (0, 1); > 0.5 is an upper expectile
    beta: float = 3.0  # inverse temperature: weights exp(beta · advantage); 0 gives behaviour cloning
    discount: float = 0.99  # γ, in (0, 1]
    polyak_rate: float = 0.005  # target critic ← (1 − rate) · target + rate · online, every update
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    actor_schedule: str = "cosine"  # cosine (decay to 0 at train.steps) | constant
    exp_adv_max: float = 100.0  # clip of exp(beta · advantage)
    # gaussian (tanh mean, state-independent log-std) | deterministic (weighted MSE); continuous actions only:
    # discrete actions always use a categorical policy
    policy: str = "gaussian"
    log_std_min: float = -5.0
    log_std_max: float = 2.0


@dataclass
class NetworkConfig:
    """Shape of the MLPs (Q ensemble, V and π share it)."""

    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    layer_norm: bool = False  # LayerNorm after each hidden layer of the critics and the value net
    actor_dropout: float = 0.0  # dropout on the actor's hidden layers while training (Kitchen/Adroit: 0.1)
    num_critics: int = 2  # size of the Q ensemble; Q̂ is the min over it


@dataclass
class DatasetConfig:
    """Which Minari dataset, and how its transitions are prepared."""

    id: str = "iql/pendulum/mixed-v0"  # Minari id namespace/name-vN, read from $MINARI_DATASETS_PATH
    recipe: str | None = None  # local recipe that builds `id` when it is missing (python -m iql.data list)
    download: bool = False  # fetch a remote dataset that is missing locally (needs minari[hf] and network)
    reward_transform: str = "none"  # none | locomotion (×1000 / return range) | antmaze (r − 1)
    normalize_obs: bool = False  # standardise observations with the dataset's mean/std
    eval_env: str | None = None  # Gymnasium id to evaluate in, instead of the dataset's eval env
    # goal-reaching data: a transition that reaches the goal (infos/success, else reward > 0) is terminal for the
    # Bellman target, as the official IQL code's D4RL AntMaze terminals are (on in the maze presets)
    goal_terminals: bool = False


@dataclass
class TrainConfig:
    steps: int = 20_000  # gradient updates
    batch_size: int = 256
    log_every: int = 500  # steps between metrics.jsonl / W&B rows
    eval_every: int = 5_000  # steps between evaluations (the last step is always evaluated)
    checkpoint_every: int = 5_000  # steps between checkpoints (the last step is always saved)


@dataclass
class EvalConfig:
    episodes: int = 10  # episodes per evaluation, run as one vectorised environment
    max_episode_steps: int | None = None  # cap on episode length; None keeps the environment's limit
    # the score of record (summary.json, W&B summary, progress bar, best_*, iql.report): auto (success rate where
    # the env reports info["success"], else the normalised return, else the raw return) | normalized_return |
    # success_rate.
    score: str = "auto"
    # goal reaching: where the env reports info["success"], an episode ends at its first success (as D4RL's AntMaze
    # eval envs end at the goal). false keeps the full episode (Adroit reports success but is scored by return).
    end_on_success: bool = True


@dataclass
class OnlineConfig:
    """Offline-to-online fine-tuning (paper §5.3): after ``train.steps`` offline updates, ``steps`` environment
    steps in the dataset's environment, the policy's *sampled* action (clipped to the bounds) acting, each step's
    transition appended to a replay buffer that starts as the whole dataset, and ``updates_per_step`` updates of the
    same ``iql_update`` on batches drawn uniformly from it (official ``train_finetune.py``). Off when ``steps`` = 0.
    """

    steps: int = 0  # environment steps after the offline phase; 0: no online phase (offline training only)
    updates_per_step: int = 1  # gradient updates per environment step (official: 1)
    # online transitions the buffer keeps, first in first out; the dataset part is never dropped. None: all of them
    buffer_capacity: int | None = None
    # the actor's learning rate online: constant (the base rate, never decayed: the official fine-tuning configs) |
    # cosine (a fresh cosine decay from the base rate to 0 over the online updates)
    actor_schedule: str = "constant"
    temperature: float = 1.0  # std of the sampled Gaussian action × this (official: 1); discrete: logits ÷ this
    # std of the Gaussian exploration noise added to a deterministic policy's action (algorithm.policy=deterministic;
    # CORL's expl_noise), in units of the [−1, 1] action range
    exploration_noise: float = 0.1


@dataclass
class SlurmConfig:
    """What a SLURM job asks for; ``conf/hardware/slurm*.yaml`` pass these to Hydra's submitit launcher."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: int = 60  # wall-time limit per job, minutes
    cpus_per_task: int = 2  # the job's torch threads follow this (SLURM_CPUS_PER_TASK)
    mem_gb: int = 8
    gpus_per_node: int = 0
    array_parallelism: int = 64  # jobs of one sweep running at once
    max_requeues: int = 3  # requeues after a timeout (preemptions are always requeued)
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load, source venv)
    additional: dict[str, str] = field(default_factory=dict)  # other sbatch options, e.g. {mail-type: END}


@dataclass
class HardwareConfig:
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    threads: int | None = None  # torch intra-op threads; None: the cores this job was given
    jobs_per_node: int = 1  # jobs sharing this machine's cores (local parallel sweeps)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    # Run each update as one torch.compile'd graph (iql/compiled.py; same losses and parameter changes as eager).
    # 1.2-1.5x the eager rate on CPU (README) after 20-35 s of compilation (~5 s when cached): worth it for long runs.
    compile: bool = False
    # With compile=true on a GPU: replay the compiled update as a CUDA graph (torch.compile's "reduce-overhead"), one
    # graph launch per update instead of one kernel launch per kernel; the metrics are cloned out of the graph's
    # memory. Needs compile=true; on a CPU torch skips the graph and runs the compiled update as compile=true does.
    cuda_graphs: bool = False
    # float32 matmuls: highest (full fp32) | high (TF32 on Ampere and newer GPUs, JAX's GPU default) | medium (bf16
    # where the hardware has it). No effect on CPUs without such units, like the 2-core AVX2 machine here.
    matmul_precision: str = "highest"


@dataclass
class LoggerConfig:
    backend: str = "wandb"  # wandb | none (metrics.jsonl and summary.json are always written)
    mode: str = "auto"  # auto (online with an API key, else offline) | offline | online | disabled
    project: str = "iql"
    entity: str | None = None
    group: str | None = None  # W&B group; None: derived from the sweep, the dataset and the non-seed overrides
    name: str | None = None  # W&B run name; None: derived from the overrides
    tags: list[str] = field(default_factory=list)
    job_type: str = "train"
    sweep: str | None = None  # sweep name: a W&B tag and the front of the group; None: from hydra.sweep.dir in -m


@dataclass
class RunConfig:
    """Everything one training run needs."""

    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # the command-line overrides, for naming runs
    config_source: list[str] = field(default_factory=list)  # -cd/-cn of a primary config other than conf/, to resume


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {expected}. Fix it on the command line, e.g. {key}=<value>.")


def _one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, value, f"expected one of {', '.join(choices)}")


def validate(cfg: RunConfig) -> RunConfig:
    """Check every value a user can get wrong; raise ``ConfigError`` naming the key and the fix."""
    a, n, d, t, e, h, log = cfg.algorithm, cfg.network, cfg.dataset, cfg.train, cfg.eval, cfg.hardware, cfg.logger
    _one_of("algorithm.name", a.name, ALGORITHMS)
    _require(0.0 < a.expectile < 1.0, "algorithm.expectile", a.expectile, "the expectile τ must lie in (0, 1)")
    _require(a.beta >= 0.0 and math.isfinite(a.beta), "algorithm.beta", a.beta, "β must be a finite number ≥ 0")
    _require(0.0 < a.discount <= 1.0, "algorithm.discount", a.discount, "the discount γ must lie in (0, 1]")
    _require(0.0 < a.polyak_rate <= 1.0, "algorithm.polyak_rate", a.polyak_rate, "must lie in (0, 1]")
    for key in ("actor_lr", "critic_lr", "value_lr"):
        value = getattr(a, key)
        _require(value > 0.0 and math.isfinite(value), f"algorithm.{key}", value, "a learning rate must be > 0")
    _one_of("algorithm.actor_schedule", a.actor_schedule, ACTOR_SCHEDULES)
    _require(a.exp_adv_max > 0.0, "algorithm.exp_adv_max", a.exp_adv_max, "the weight clip must be > 0")
    _one_of("algorithm.policy", a.policy, POLICIES)
    _require(a.log_std_min < a.log_std_max, "algorithm.log_std_min", a.log_std_min, "must be < log_std_max")

    _require(
        len(n.hidden_dims) > 0 and all(w > 0 for w in n.hidden_dims),
        "network.hidden_dims",
        n.hidden_dims,
        "a non-empty list of positive layer widths, e.g. [256,256]",
    )
    _one_of("network.activation", n.activation, ACTIVATIONS)
    _require(0.0 <= n.actor_dropout < 1.0, "network.actor_dropout", n.actor_dropout, "must lie in [0, 1)")
    _require(n.num_critics >= 1, "network.num_critics", n.num_critics, "at least one critic")

    _require(
        bool(DATASET_ID_PATTERN.match(d.id)),
        "dataset.id",
        d.id,
        "a Minari id has the form namespace/name-vN with a version, e.g. mujoco/hopper/medium-v0",
    )
    _one_of("dataset.reward_transform", d.reward_transform, REWARD_TRANSFORMS)

    _require(t.steps > 0, "train.steps", t.steps, "the number of gradient steps must be > 0")
    _require(t.batch_size > 0, "train.batch_size", t.batch_size, "the batch size must be > 0")
    for key in ("log_every", "eval_every", "checkpoint_every"):
        _require(getattr(t, key) > 0, f"train.{key}", getattr(t, key), "an interval in steps must be > 0")
    _require(e.episodes > 0, "eval.episodes", e.episodes, "at least one evaluation episode")
    _require(
        e.max_episode_steps is None or e.max_episode_steps > 0,
        "eval.max_episode_steps",
        e.max_episode_steps,
        "a positive episode length, or null",
    )

    _require(
        h.device in DEVICES or bool(re.fullmatch(r"cuda:\d+", h.device)),
        "hardware.device",
        h.device,
        "expected auto, cpu, cuda or cuda:N",
    )
    _require(h.threads is None or h.threads > 0, "hardware.threads", h.threads, "a positive count, or null")
    _require(h.jobs_per_node >= 1, "hardware.jobs_per_node", h.jobs_per_node, "at least 1")
    for key in ("time_min", "cpus_per_task", "mem_gb", "array_parallelism"):
        _require(getattr(h.slurm, key) >= 1, f"hardware.slurm.{key}", getattr(h.slurm, key), "must be ≥ 1")
    _require(h.slurm.gpus_per_node >= 0, "hardware.slurm.gpus_per_node", h.slurm.gpus_per_node, "must be ≥ 0")
    _require(h.slurm.max_requeues >= 0, "hardware.slurm.max_requeues", h.slurm.max_requeues, "must be ≥ 0")
    _require(isinstance(h.compile, bool), "hardware.compile", h.compile, "true or false")
    _require(isinstance(h.cuda_graphs, bool), "hardware.cuda_graphs", h.cuda_graphs, "true or false")
    _require(
        h.compile or not h.cuda_graphs,
        "hardware.cuda_graphs",
        h.cuda_graphs,
        "CUDA graphs replay the compiled update, so they need hardware.compile=true as well",
    )
    _one_of("hardware.matmul_precision", h.matmul_precision, MATMUL_PRECISIONS)

    o = cfg.online
    _require(
        isinstance(o.steps, int) and o.steps >= 0, "online.steps", o.steps, "environment steps ≥ 0 (0: no fine-tuning)"
    )
    _require(o.updates_per_step >= 1, "online.updates_per_step", o.updates_per_step, "at least 1 update per step")
    _require(
        o.buffer_capacity is None or o.buffer_capacity >= 1,
        "online.buffer_capacity",
        o.buffer_capacity,
        "a positive number of online transitions, or null (keep all online.steps of them)",
    )
    _one_of("online.actor_schedule", o.actor_schedule, ONLINE_ACTOR_SCHEDULES)
    _require(o.temperature > 0.0 and math.isfinite(o.temperature), "online.temperature", o.temperature, "must be > 0")
    _require(o.exploration_noise >= 0.0, "online.exploration_noise", o.exploration_noise, "a std ≥ 0")

    _one_of("eval.score", e.score, EVAL_SCORES)
    _require(
        isinstance(cfg.seed, int) and 0 <= cfg.seed < SEED_LIMIT,
        "seed",
        cfg.seed,
        f"a seed is an integer with 0 ≤ seed < 2**32 ({SEED_LIMIT}), as numpy requires",
    )

    _one_of("logger.backend", log.backend, LOGGER_BACKENDS)
    _one_of("logger.mode", log.mode, LOGGER_MODES)
    return cfg


def unknown_keys(values: dict[str, Any], schema: type = RunConfig, prefix: str = "") -> list[str]:
    """Dotted keys of ``values`` that ``schema`` does not declare (``+algorithm.typo=1`` would otherwise vanish)."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    found: list[str] = []
    for key, value in values.items():
        if key not in fields:
            found.append(f"{prefix}{key}")
            continue
        sub = fields[key].type
        sub_type = globals().get(sub) if isinstance(sub, str) else sub
        if isinstance(value, dict) and dataclasses.is_dataclass(sub_type):
            found += unknown_keys(value, sub_type, f"{prefix}{key}.")  # type: ignore[arg-type]
    return found

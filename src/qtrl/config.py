"""Training configuration: one frozen dataclass, saved as ``config.json``.

Every field carries a one-line ``help`` in its metadata;
:func:`qtrl.flags.add_dataclass_flags` turns the fields into ``argparse`` flags,
so the CLI and the JSON file can never disagree. Sizes that follow from the fields (updates, vector-env copies) are
properties, never fields patched after parsing.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UserError
from .generator import ACTIVATIONS
from .limits import check_int_fields
from .presets import PRESETS
from .quantum.backends import parse_noise
from .quantum.estimators import GRAD_METHODS, check_gradient_setup

__all__ = [
    "ACTOR_CRITIC_ALGOS",
    "ACTOR_CRITIC_FIELDS",
    "ALGOS",
    "AUTORESET_MODES",
    "BACKENDS",
    "BUDGET_FIELDS",
    "CRITICS",
    "CRITIC_INPUTS",
    "DIST_MODES",
    "POLICIES",
    "QUANTUM_FIELDS",
    "RESUMABLE_FIELDS",
    "RUNTIME_FIELDS",
    "TrainConfig",
    "is_multiagent",
]

AUTORESET_MODES = ("same-step", "next-step")
DIST_MODES = ("sync", "async")
ALGOS = ("reinforce", "a2c", "ppo")
ACTOR_CRITIC_ALGOS = ("a2c", "ppo")
CRITICS = ("quantum", "classical")
POLICIES = ("shared", "per-agent", "shared-bits")
CRITIC_INPUTS = ("global", "local")


def is_multiagent(env_id: str) -> bool:
    """``module:env`` names a PettingZoo task (:mod:`qtrl.rl.multiagent`); a
    Gymnasium id has no colon before its first slash (``ALE/Pong-v5``)."""
    return ":" in env_id.split("/")[0]

ACTIVATIONS_POLICY = ("relu", "tanh")
# Fields only the actor-critic algorithms use: a REINFORCE run must leave them at their defaults.
PPO_ONLY_FIELDS = ("num_minibatches", "update_epochs", "clip_coef", "clip_vloss")
ACTOR_CRITIC_FIELDS = ("critic", "critic_hidden", "num_steps", "num_minibatches", "update_epochs",
                       "gae_lambda", "clip_coef", "clip_vloss", "vf_coef", "log_std_init",
                       "norm_reward", "norm_obs", "norm_value")
BACKENDS = ("torch", "pennylane", "pennylane:lightning.qubit", "qiskit")
# Settings of the circuit's execution; a --classical run must leave them at their defaults.
QUANTUM_FIELDS = ("backend", "shots", "noise", "grad", "spsa_c", "spsa_samples")
# What a continued run (--resume) may change: its length, and settings that do not
# change what is learned (time-outs, how often to checkpoint or check, the summary's).
BUDGET_FIELDS = ("episodes", "total_steps")
RUNTIME_FIELDS = ("agent_timeout", "checkpoint_every", "sync_check_every", "solve_threshold")
RESUMABLE_FIELDS = BUDGET_FIELDS + RUNTIME_FIELDS


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its CLI help (and optional ``choices``/``flag``) as metadata."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (an algorithm of :mod:`qtrl.algos`
    on a Quantum-Train or classical policy). ``asdict(config)`` is what lands in
    ``config.json``."""

    preset: str | None = _f(None, "reference preset whose settings are the defaults",
                            choices=tuple(sorted(PRESETS)))
    env: str = _f("CartPole-v1", "Gymnasium environment id (Discrete or Box actions; Box or "
                                 "MiniGrid-image observations), or a PettingZoo parallel env "
                                 "as module:env (mpe2:simple_spread_v3), whose task agents "
                                 "(players) are all trained")
    env_kwarg: tuple[str, ...] = _f((), "multi-agent task: KEY=VALUE passed to its "
                                        "parallel_env() (repeatable; int/float/bool/str)",
                                    repeat=True)
    policy: str = _f("shared", "multi-agent task: one network and generator for every "
                               "player, its index a one-hot input (shared); a generator per "
                               "player (per-agent); or one circuit and mapping making each "
                               "player's network, the player as index bits (shared-bits)",
                     choices=POLICIES)
    critic_input: str | None = _f(None, "multi-agent a2c/ppo: the critic sees every "
                                        "player's observation (global: MAPPO) or its own "
                                        "(local: IPPO); none: global",
                                  choices=CRITIC_INPUTS)
    hidden: tuple[int, ...] = _f((64,), "hidden layer sizes of the policy network")
    activation: str = _f("relu", "activation between the policy's (and critic's) layers",
                         choices=ACTIVATIONS_POLICY)
    n_actions: int | None = _f(None, "use only the first N actions (none: all)")
    max_steps: int | None = _f(None, "per-episode step cap (none: the environment's own)")
    classical: bool = _f(False, "train the policy network directly (the baseline) "
                                "instead of through Quantum-Train")
    layers: int = _f(5, "ansatz layers L of the circuit")
    mapping_hidden: tuple[int, ...] = _f((10, 10, 10), "hidden sizes of the mapping model")
    mapping_activation: str = _f("relu", "activation between mapping layers ('none' is "
                                         "the reference's linear mapping; relu learns best)",
                                 choices=tuple(ACTIVATIONS))
    ansatz: str = _f("ring-u3", "circuit ansatz", choices=("ring-u3", "ry-cnot"))
    chunks: int = _f(1, "circuits (chunks) Q that share the weight generation; with "
                        "--agents N each agent (QPU) runs its share of them")
    qt_gamma: float = _f(0.1, "γ of the probability post-processing (β·tanh(γ·2^(n-1)·p))^α")
    qt_beta: float = _f(1.0, "β of the probability post-processing")
    qt_alpha: float = _f(1.0, "α of the probability post-processing")
    qt_init_std: float | None = _f(None, "rescale the mapping's output layer at init so the "
                                         "generated weights have this std (none: as built)")
    backend: str = _f("torch", "where the circuits run: our exact simulator, a PennyLane "
                               "device or Qiskit Aer", choices=BACKENDS)
    shots: int | None = _f(None, "samples per circuit that estimate its probabilities "
                                 "(none: exact)")
    noise: str | None = _f(None, "Qiskit Aer's noise model, e.g. depolarizing:0.01, "
                                 "readout:0.02, or both joined by a comma (--backend torch: "
                                 "exact density matrices, or qiskit: Aer; not pennylane)")
    grad: str = _f("backprop", "gradient of the circuit angles: autograd (exact torch backend "
                               "only) or from extra circuit runs", choices=GRAD_METHODS)
    spsa_c: float = _f(0.1, "SPSA perturbation step in radians (--grad spsa)")
    spsa_samples: int = _f(1, "SPSA random directions averaged per update (--grad spsa)")
    algo: str = _f("reinforce", "training algorithm (qtrl.algos): reinforce (the paper's), "
                                "a2c or ppo (actor-critic, GAE)", choices=ALGOS)
    critic: str | None = _f(None, "a2c/ppo: the value network's weights generated by its own "
                                  "circuit (quantum) or trained directly (classical); none: "
                                  "quantum, classical with --classical", choices=CRITICS)
    critic_hidden: tuple[int, ...] | None = _f(None, "a2c/ppo: hidden sizes of the value "
                                                     "network (none: --hidden)")
    num_steps: int | None = _f(None, "a2c/ppo: steps per env copy in each update's roll-out "
                                     "(none: 128 for ppo, 5 for a2c)")
    num_minibatches: int = _f(4, "ppo: minibatches per epoch")
    update_epochs: int = _f(4, "ppo: passes over each roll-out")
    gae_lambda: float = _f(0.95, "a2c/ppo: λ of the generalised advantage estimate")
    clip_coef: float = _f(0.2, "ppo: clip range of the probability ratio")
    clip_vloss: bool = _f(False, "ppo: clip the value loss around the old values as well")
    vf_coef: float = _f(0.5, "a2c/ppo: weight of the value loss")
    norm_reward: bool = _f(False, "a2c/ppo: divide rewards by the running std of the "
                                  "discounted return (SB3's VecNormalize reward scaling)")
    norm_obs: bool = _f(False, "a2c/ppo: standardise observations by their running mean and "
                               "std (folded into the exported policy's first layer)")
    norm_value: bool = _f(False, "a2c/ppo: the critic learns value targets standardised by "
                                 "their running mean and std (MAPPO's value normalisation)")
    log_std_init: float = _f(0.0, "a2c/ppo with continuous actions: initial log standard "
                                  "deviation of the Gaussian head (a trained parameter)")
    total_steps: int | None = _f(None, "stop at the first update boundary after this many env "
                                       "steps (all agents); none: --episodes alone bounds it")
    lr: float = _f(1e-3, "Adam learning rate")
    mapping_lr: float | None = _f(None, "Adam learning rate of the mapping model (none: --lr)")
    anneal_lr: bool = _f(False, "decay the learning rate linearly to 0 over the run")
    max_grad_norm: float | None = _f(None, "clip the gradient's global norm to this before "
                                           "the optimizer step (none: no clipping)")
    gamma: float = _f(0.99, "discount of the returns")
    entropy: float = _f(0.0, "entropy bonus coefficient")
    episodes: int = _f(1000, "training episodes (a2c/ppo: stop at the first update boundary "
                             "after this many finished episodes)")
    episodes_per_update: int = _f(1, "complete episodes collected per update")
    num_envs: int | None = _f(None, "vector-env copies (none: reinforce min(episodes-per-update, "
                                    "8), a2c/ppo 8)")
    autoreset: str = _f("same-step", "Gymnasium vector autoreset mode of the roll-outs",
                        choices=AUTORESET_MODES)
    seed: int = _f(0, "seed of the initial parameters, environments and action sampling")
    agents: int = _f(1, "agents (QPUs) training the shared model in parallel; each collects "
                        "--episodes-per-update episodes per update (Dist-QTRL)")
    dist_mode: str = _f("sync", "how the agents combine their gradients: sync (one "
                                "all-reduce per update, every agent takes the same step) or "
                                "async (agent 0 learns, the others push gradients and pull "
                                "parameters without waiting for each other, A3C-like)",
                        choices=DIST_MODES, flag="--mode")
    max_staleness: int = _f(4, "--mode async: apply a pushed gradient only if at most this "
                               "many updates were applied since its parameters were sent; "
                               "staler ones are dropped")
    agent_timeout: float = _f(50.0, "seconds an agent may stay silent before the run is ended")
    sync_check_every: int = _f(10, "updates between checks that all agents hold identical "
                                   "parameters")
    checkpoint_every: int = _f(10, "updates between checkpoints (and at the end)")
    solve_threshold: float | None = _f(None, "100-episode average return that counts as solved")

    def __post_init__(self) -> None:
        check_int_fields(self)   # before any check below computes with a huge integer
        for name in ("layers", "episodes", "episodes_per_update", "chunks", "checkpoint_every",
                     "agents", "sync_check_every"):
            _positive(name, getattr(self, name))
        for name in ("num_minibatches", "update_epochs"):
            _positive(name, getattr(self, name))
        for name in ("n_actions", "max_steps", "num_envs", "num_steps", "total_steps"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("hidden", "mapping_hidden", "critic_hidden"):
            sizes = getattr(self, name)
            if sizes is None and name == "critic_hidden":
                continue
            if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
                raise UserError(f"{_flag(name)} {' '.join(map(str, sizes))}: sizes must be "
                                f"one or more positive integers")
        if not (math.isfinite(self.agent_timeout) and self.agent_timeout > 0):
            raise UserError(f"--agent-timeout {self.agent_timeout}: must be a positive number "
                            f"of seconds")
        if self.qt_init_std is not None and not (math.isfinite(self.qt_init_std)
                                                 and self.qt_init_std > 0):
            raise UserError(f"--qt-init-std {self.qt_init_std}: must be a positive number")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr {self.lr}: the learning rate must be a positive number")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm)
                                                   and self.max_grad_norm > 0):
            raise UserError(f"--max-grad-norm {self.max_grad_norm}: must be a positive number")
        if self.mapping_lr is not None and not (math.isfinite(self.mapping_lr)
                                                and self.mapping_lr > 0):
            raise UserError(f"--mapping-lr {self.mapping_lr}: the learning rate must be a "
                            f"positive number")
        if not 0.0 <= self.gamma <= 1.0:
            raise UserError(f"--gamma {self.gamma}: the discount must be in [0, 1]")
        if not (math.isfinite(self.entropy) and self.entropy >= 0):
            raise UserError(f"--entropy {self.entropy}: must be >= 0")
        if self.preset is not None and self.preset not in PRESETS:
            raise UserError(f"--preset {self.preset!r}: choose from {', '.join(sorted(PRESETS))}")
        if self.mapping_activation not in ACTIVATIONS:
            raise UserError(f"--mapping-activation {self.mapping_activation!r}: choose from "
                            f"{', '.join(ACTIVATIONS)}")
        if self.autoreset not in AUTORESET_MODES:
            raise UserError(f"--autoreset {self.autoreset!r}: choose from "
                            f"{', '.join(AUTORESET_MODES)}")
        if self.activation not in ACTIVATIONS_POLICY:
            raise UserError(f"--activation {self.activation!r}: choose from "
                            f"{', '.join(ACTIVATIONS_POLICY)}")
        if (self.algo == "reinforce" and self.num_envs is not None
                and self.num_envs > self.episodes_per_update):
            raise UserError(f"--num-envs {self.num_envs}: at most --episodes-per-update "
                            f"({self.episodes_per_update}) copies can hold an episode")
        self._check_algorithm()
        self._check_players()
        self._check_distributed()
        self._check_quantum()

    def _changed(self, names: tuple[str, ...]) -> list[str]:
        """``"--flag value"`` of each field of ``names`` set away from its default."""
        defaults = {f.name: f.default for f in fields(self)}
        return [f"{_flag(k)} {_shown(getattr(self, k))}" for k in names
                if getattr(self, k) != defaults[k]]

    def _check_algorithm(self) -> None:
        """``--algo`` and the options that belong to another algorithm."""
        if self.algo not in ALGOS:
            raise UserError(f"--algo {self.algo!r}: choose from {', '.join(ALGOS)}")
        if self.algo == "reinforce":
            given = self._changed(ACTOR_CRITIC_FIELDS)
            if given:
                raise UserError(f"{', '.join(given)}: only used with --algo a2c or ppo (an "
                                f"actor-critic), not --algo reinforce")
            return
        if self.critic is not None and self.critic not in CRITICS:
            raise UserError(f"--critic {self.critic!r}: choose from {', '.join(CRITICS)}")
        if self.classical and self.critic == "quantum":
            raise UserError("--critic quantum with --classical: a classical run has no "
                            "circuit; drop one of them")
        if self.algo == "a2c":
            ppo_only = self._changed(PPO_ONLY_FIELDS)
            if ppo_only:
                raise UserError(f"{', '.join(ppo_only)}: only used with --algo ppo (a2c takes "
                                f"one unclipped step per roll-out)")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise UserError(f"--gae-lambda {self.gae_lambda}: must be in [0, 1]")
        for name in ("clip_coef", "vf_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{_flag(name)} {value}: must be a positive number")
        if not math.isfinite(self.log_std_init):
            raise UserError(f"--log-std-init {self.log_std_init}: must be a finite number")
        if self._changed(("episodes_per_update",)):
            raise UserError(f"--episodes-per-update {self.episodes_per_update}: --algo "
                            f"{self.algo} rolls out --num-steps steps per copy, not episodes")
        if self.autoreset != "same-step":
            raise UserError(f"--autoreset {self.autoreset}: --algo {self.algo} needs same-step "
                            f"(it bootstraps from the final observation of a truncated episode)")
        if self.dist_mode == "async" and self.algo == "ppo":
            raise UserError("--mode async --algo ppo: an async worker pushes one gradient "
                            "per roll-out, PPO takes many steps on each; use --algo a2c "
                            "(A3C) or reinforce, or --mode sync (all-reduced at every "
                            "minibatch step)")
        for flag, on in (("--norm-obs", self.norm_obs), ("--norm-value", self.norm_value)):
            if self.dist_mode == "async" and on:
                raise UserError(f"{flag} with --mode async: async workers would each keep "
                                f"their own statistics; use --mode sync, or --no-{flag[2:]}")
        batch = self.steps_per_update // self.agents
        if self.algo == "ppo" and self.num_minibatches > batch:
            raise UserError(f"--num-minibatches {self.num_minibatches}: a roll-out of "
                            f"{self.vector_envs} copies x {self.rollout_steps} steps has only "
                            f"{batch} samples")

    def _check_players(self) -> None:
        """The multi-agent options: only with a ``module:env`` task, and what
        such a task does not take."""
        if not is_multiagent(self.env):
            given = self._changed(("env_kwarg", "policy", "critic_input"))
            if given:
                raise UserError(f"{', '.join(given)}: only for a multi-agent task "
                                f"(--env module:env, e.g. mpe2:simple_spread_v3), not "
                                f"--env {self.env}")
            return
        if self.policy not in POLICIES:
            raise UserError(f"--policy {self.policy!r}: choose from {', '.join(POLICIES)}")
        if self.critic_input is not None and self.critic_input not in CRITIC_INPUTS:
            raise UserError(f"--critic-input {self.critic_input!r}: choose from "
                            f"{', '.join(CRITIC_INPUTS)}")
        if not self.actor_critic:
            raise UserError(f"--algo {self.algo} with the multi-agent task {self.env}: use "
                            f"--algo ppo (MAPPO/IPPO) or a2c")
        refused = [flag for flag, on in (("--mode async", self.dist_mode == "async"),
                                         ("--norm-obs", self.norm_obs),
                                         (f"--n-actions {self.n_actions}",
                                          self.n_actions is not None)) if on]
        if refused:
            raise UserError(f"{', '.join(refused)}: not supported with the multi-agent task "
                            f"{self.env}")

    def _check_distributed(self) -> None:
        """``--mode`` and its staleness bound."""
        if self.dist_mode not in DIST_MODES:
            raise UserError(f"--mode {self.dist_mode!r}: choose from {', '.join(DIST_MODES)}")
        if (not isinstance(self.max_staleness, int) or isinstance(self.max_staleness, bool)
                or self.max_staleness < 0):
            raise UserError(f"--max-staleness {self.max_staleness}: must be an integer >= 0")
        if self.dist_mode == "async" and self.agents < 2:
            raise UserError(f"--mode async --agents {self.agents}: async training needs a "
                            f"learner and at least one worker, so --agents 2 or more")
        default = next(f.default for f in fields(self) if f.name == "max_staleness")
        if self.dist_mode == "sync" and self.max_staleness != default:
            raise UserError(f"--max-staleness {self.max_staleness}: only used with --mode "
                            f"async, not --mode sync")

    def _check_quantum(self) -> None:
        """Backend, shots, noise and gradient method: each valid, and together a
        setup that can work (:func:`~qtrl.quantum.estimators.check_gradient_setup`)."""
        defaults = {f.name: f.default for f in fields(self) if f.name in QUANTUM_FIELDS}
        changed = self._changed(QUANTUM_FIELDS)
        if self.classical and changed:
            raise UserError(f"{', '.join(changed)}: a --classical run has no circuit; "
                            f"drop {'these flags' if len(changed) > 1 else 'it'} or --classical")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend {self.backend!r}: choose from {', '.join(BACKENDS)}")
        if self.grad not in GRAD_METHODS:
            raise UserError(f"--grad {self.grad!r}: choose from {', '.join(GRAD_METHODS)}")
        if self.shots is not None:
            _positive("shots", self.shots)
        try:
            noisy = bool(parse_noise(self.noise))
        except UserError as err:
            raise UserError(f"--noise: {err}") from None
        if noisy and self.backend == "pennylane":
            raise UserError(f"--noise {self.noise}: noise needs --backend torch (exact "
                            f"density matrices) or qiskit (Aer), not --backend {self.backend}")
        if not (isinstance(self.spsa_c, (int, float)) and math.isfinite(self.spsa_c)
                and self.spsa_c > 0):
            raise UserError(f"--spsa-c {self.spsa_c}: the SPSA step must be a positive number")
        _positive("spsa_samples", self.spsa_samples)
        if self.grad != "spsa":
            for name in ("spsa_c", "spsa_samples"):
                if getattr(self, name) != defaults[name]:
                    raise UserError(f"{_flag(name)} {getattr(self, name)}: only used with "
                                    f"--grad spsa, not --grad {self.grad}")
        check_gradient_setup(self.backend, self.shots, self.noise if noisy else None, self.grad)

    # -- derived sizes ---------------------------------------------------------------

    @property
    def actor_critic(self) -> bool:
        """PPO or A2C: a critic, fixed-step roll-outs that continue across updates."""
        return self.algo in ACTOR_CRITIC_ALGOS

    @property
    def rollout_steps(self) -> int:
        """a2c/ppo: steps per env copy in each update's roll-out."""
        return self.num_steps or (5 if self.algo == "a2c" else 128)

    @property
    def steps_per_update(self) -> int:
        """a2c/ppo: env steps of one update, all agents together."""
        return self.rollout_steps * self.vector_envs * self.agents

    def budget_used(self, update: int, episodes: int, env_steps: int) -> float:
        """The fraction of the run's budget spent after ``update`` updates, ``episodes``
        finished episodes and ``env_steps`` env steps (all agents); the run stops at 1
        (and the learning rate anneals to 0 there). REINFORCE counts updates (its
        episodes are fixed per update), the actor-critics finished episodes."""
        used = update / self.updates if not self.actor_critic else episodes / self.episodes
        if self.total_steps is not None:
            used = max(used, env_steps / self.total_steps)
        return used

    @property
    def updates(self) -> int:
        """Optimizer steps of the run: ``episodes`` counts all agents' episodes
        (the last update may collect fewer per agent). ``--mode async``: one step
        per worker push, fewer when stale gradients are dropped."""
        if self.dist_mode == "async":
            return math.ceil(self.episodes / self.episodes_per_update)
        return math.ceil(self.episodes / (self.episodes_per_update * self.agents))

    def episodes_in_update(self, update: int) -> int:
        """Episodes each agent collects in ``update`` (0-based)."""
        left = self.episodes - update * self.episodes_per_update * self.agents
        return max(1, min(self.episodes_per_update, math.ceil(left / self.agents)))

    @property
    def vector_envs(self) -> int:
        """Environment copies stepped side by side."""
        if self.actor_critic:
            return self.num_envs or 8
        return self.num_envs or min(self.episodes_per_update, 8)

    @property
    def mode(self) -> str:
        """``"classical"`` or ``"quantum-train"``."""
        return "classical" if self.classical else "quantum-train"

    @property
    def name(self) -> str:
        """Short run name: preset (or env), mode and seed."""
        base = self.preset or self.env.replace("/", "_")
        return f"{base}-{'classical' if self.classical else 'qt'}-seed{self.seed}"

    # -- presets and JSON -------------------------------------------------------------

    @classmethod
    def from_preset(cls, preset: str | None, **overrides: Any) -> TrainConfig:
        """Defaults of ``preset`` (the reference recipes, :mod:`qtrl.presets`) with
        ``overrides`` on top."""
        base: dict[str, Any] = {}
        if preset is not None:
            if preset not in PRESETS:
                raise UserError(f"unknown preset {preset!r}; choose from "
                                f"{', '.join(sorted(PRESETS))}")
            p = PRESETS[preset]
            base = {"preset": preset, "env": p.env_id, "hidden": p.hidden,
                    "layers": p.layers, "mapping_hidden": p.mapping_hidden, "lr": p.lr,
                    "gamma": p.discount, "entropy": p.entropy, "episodes": p.episodes,
                    "max_steps": p.max_steps, "qt_gamma": p.qt_gamma, "qt_beta": p.qt_beta,
                    "qt_alpha": p.qt_alpha, "n_actions": p.n_actions,
                    "solve_threshold": p.solve_threshold, **p.settings}
            algo = overrides.get("algo", base.get("algo"))
            if algo not in ACTOR_CRITIC_ALGOS:
                # e.g. --preset cartpole --algo reinforce: the preset's actor-critic
                # settings do not apply (its network and budget do)
                base = {k: v for k, v in base.items()
                        if k not in (*ACTOR_CRITIC_FIELDS, "num_envs", "algo")}
            elif algo == "a2c":
                base = {k: v for k, v in base.items() if k not in PPO_ONLY_FIELDS}
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; JSON lists become tuples again."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown configuration keys {unknown}; known are {sorted(known)}")
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if typing.get_origin(hints[k]) is tuple and v is not None else v
                  for k, v in data.items()}
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """JSON file ``path``'s configuration; else ``UserError``, one line."""
        try:
            data = json.loads(Path(path).read_bytes().decode("utf-8"))
        except OSError as err:
            raise UserError(f"cannot read the run configuration {path}: "
                            f"{err.strerror or err}") from None
        except ValueError as err:   # not UTF-8, not JSON
            raise UserError(f"the run configuration {path} is not UTF-8 JSON text "
                            f"({type(err).__name__}: {err})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} does not hold a configuration object")
        try:
            return cls.from_dict(data)
        except (UserError, TypeError, AttributeError, KeyError) as err:
            raise UserError(f"{path}: not a valid configuration ({err})") from None


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{_flag(name)} {value}: must be a positive integer")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")

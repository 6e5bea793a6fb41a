"""The trained model of a run and the fast actor used in roll-outs.

Both kinds of model expose the same three calls, so the train loop does not
care which one it holds:

- ``model.generate() -> {name: tensor}``: the policy network's weights
  (Quantum-Train: made by the circuit and mapping model; classical: its own
  parameters);
- ``model(obs, weights=w)``: the policy network run with those weights
  (``torch.func.functional_call``), returning logits ``(batch, actions)``;
- ``model.materialize() -> nn.Module``: a plain copy of the policy network.

:func:`make_actor` turns detached weights into a numpy function used at every
environment step: no autograd, no torch dispatch, no per-step generation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .. import jit
from ..generator import QuantumTrain, call_with
from ..presets import build_policy
from ..run.seeds import Stream, integer_seed
from .actor_critic import ActorCritic
from .normalize import ObsNormalizer, ValueNormalizer
from .players import player_policy

__all__ = ["ActionSampler", "Actor", "ClassicalPolicy", "ColumnsActor", "CompiledActor",
           "GaussianActor",
           "build_model", "make_actor", "sample_actions"]

Actor = Callable[[np.ndarray], np.ndarray]
"""``obs (envs, obs_dim) float32 -> logits (envs, actions)``."""


class ClassicalPolicy(nn.Module):
    """The baseline: the policy network trained directly, behind the generator's API."""

    def __init__(self, target: nn.Module) -> None:
        super().__init__()
        self.net = target

    @property
    def target(self) -> nn.Module:
        return self.net

    def generate(self) -> dict[str, Tensor]:
        """The network's own parameters (not detached: gradients reach them)."""
        return {name: p for name, p in self.net.named_parameters() if p.requires_grad}

    def forward(self, *args: Any, weights: dict[str, Tensor] | None = None) -> Any:
        if weights is None:
            return self.net(*args)
        return call_with(self.net, weights, args)

    @torch.no_grad()
    def materialize(self) -> nn.Module:
        return copy.deepcopy(self.net)

    def parameter_counts(self) -> dict[str, int]:
        k = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        return {"target_weights": k, "total": k}


def build_model(config: Any, obs_dim: int, n_actions: int, rank: int = 0,
                continuous: bool = False, views: tuple[slice, slice] | None = None,
                players: int = 1) -> QuantumTrain | ClassicalPolicy | ActorCritic:
    """The trainable model of ``config`` (a :class:`qtrl.config.TrainConfig`):
    ``QuantumTrain`` around the policy network, or the network itself; for
    PPO and A2C an :class:`~qtrl.rl.actor_critic.ActorCritic` of a policy and
    a critic built that way (the critic Quantum-Train unless ``--critic
    classical`` or ``--classical``). ``n_actions``: logits, or with
    ``continuous`` the action's dimension.

    ``rank``: the agent (QPU) that runs the circuits; its backend samples shots
    from its own stream (:attr:`~qtrl.run.seeds.Stream.SHOTS`). SPSA's
    directions come from one stream for all agents: agents that split one
    backward pass must perturb along the same directions. Training reseeds
    both every update.

    ``views``: a multi-agent task's ``(policy's columns, critic's columns)`` of
    its ``obs_dim``-wide rows (:func:`qtrl.rl.multiagent.views`): each network
    takes its own columns' width; ``players`` of them (one-hot at the end of
    the policy's columns) share its network or, by ``config.policy``
    (``per-agent``, ``shared-bits``: :mod:`qtrl.rl.players`), each get one.
    """
    activation = getattr(config, "activation", "relu")
    if getattr(config, "actor_critic", False):
        actor_in, critic_in = ((obs_dim, obs_dim) if views is None else
                               (len(range(obs_dim)[views[0]]), len(range(obs_dim)[views[1]])))
        actor_net = build_policy(actor_in, config.hidden, n_actions, activation)
        critic_net = build_policy(critic_in, config.critic_hidden or config.hidden, 1,
                                  activation)
        critic_classical = config.classical or config.critic == "classical"
        if config.classical:
            orthogonal_init(actor_net, output_gain=0.01)
        if critic_classical:
            orthogonal_init(critic_net, output_gain=1.0)
        policy = _generator(config, actor_net, rank, config.classical)
        layout = getattr(config, "policy", "shared")
        if views is not None and layout != "shared":
            def make_net() -> nn.Module:
                net = build_policy(actor_in, config.hidden, n_actions, activation)
                if config.classical:
                    orthogonal_init(net, output_gain=0.01)
                return net
            policy = player_policy(layout, make_net, players, actor_in - players,
                                   lambda t: _generator(config, t, rank, config.classical),
                                   config.classical)
        critic = _generator(config, critic_net, rank, critic_classical)
        obs_norm = ObsNormalizer(obs_dim) if getattr(config, "norm_obs", False) else None
        value_norm = ValueNormalizer() if getattr(config, "norm_value", False) else None
        return ActorCritic(policy, critic, n_actions, continuous, config.log_std_init,
                           obs_norm, views, value_norm)
    return _generator(config, build_policy(obs_dim, config.hidden, n_actions, activation),
                      rank, config.classical)


@torch.no_grad()
def orthogonal_init(net: nn.Module, output_gain: float) -> None:
    """The actor-critic initialisation of CleanRL and Stable-Baselines3 for a
    network trained directly: orthogonal weights of gain √2, zero biases, and
    ``output_gain`` for the last layer (0.01 for a policy: near-uniform actions
    at the start; 1 for a value). Quantum-Train networks get their weights from
    the generator instead (``--qt-init-std`` scales them)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=output_gain if i == len(linears) - 1
                            else math.sqrt(2))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _generator(config: Any, target: nn.Module, rank: int,
               classical: bool) -> QuantumTrain | ClassicalPolicy:
    """``target`` trained directly (``classical``) or through Quantum-Train."""
    if classical:
        return ClassicalPolicy(target)
    options = ({"c": config.spsa_c, "samples": config.spsa_samples,
                "seed": integer_seed(config.seed, Stream.SPSA_SHARED)}
               if config.grad == "spsa" else None)
    qt = QuantumTrain(target, config.layers, config.mapping_hidden, gamma=config.qt_gamma,
                      beta=config.qt_beta, alpha=config.qt_alpha, chunks=config.chunks,
                      ansatz=config.ansatz, mapping_activation=config.mapping_activation,
                      backend=config.backend, shots=config.shots, noise=config.noise,
                      grad=config.grad, seed=integer_seed(config.seed, Stream.SHOTS, rank),
                      grad_options=options)
    if getattr(config, "qt_init_std", None) is not None:
        rescale_generated_weights(qt, config.qt_init_std)
    return qt


@torch.no_grad()
def rescale_generated_weights(qt: QuantumTrain, std: float) -> None:
    """Scale the mapping model's output layer so the generated weights start with
    standard deviation ``std``.

    ``w = f(·) − mean(f(·))`` is linear in the last layer's weight matrix (its
    bias cancels in the mean), so scaling that matrix by ``s`` scales every
    generated weight by exactly ``s``. With the default ``nn.Linear`` init the
    reference's mapping produces weights ~10× smaller than the target's own
    default init — a near-zero policy at a saddle of the REINFORCE objective.
    """
    last = [m for m in qt.mapping.modules() if isinstance(m, nn.Linear)][-1]
    current = float(qt.generate_flat().std())
    if current > 0:
        last.weight.mul_(std / current)


def counts_dict(model: QuantumTrain | ClassicalPolicy) -> dict[str, Any]:
    """Parameter counts of either model as a JSON-ready dict."""
    counts = model.parameter_counts()
    return counts if isinstance(counts, dict) else counts.as_dict()


# In place: each follows a Linear whose output is a fresh array of the actor's own.
_NUMPY_ACTIVATIONS: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    nn.ReLU: lambda x: np.maximum(x, 0, out=x),
    nn.Tanh: lambda x: np.tanh(x, out=x),
}


def make_actor(target: nn.Module, weights: dict[str, Tensor]) -> Actor:
    """A roll-out function computing ``target``'s logits with ``weights``.

    An ``nn.Sequential`` of ``Linear``/``ReLU``/``Tanh`` (every policy that
    :func:`qtrl.presets.build_policy` makes) runs as one compiled call per step
    (Numba; NumPy without it): a few microseconds instead of torch's dispatch
    overhead. Any other module falls back to ``functional_call`` under
    ``torch.inference_mode``. Weights are detached.
    """
    detached = {k: v.detach() for k, v in weights.items()}
    layers = _dense_layers(target, detached)
    if layers is not None and jit.available():
        return CompiledActor(layers)
    if layers is not None:
        ops: list[Callable[[np.ndarray], np.ndarray]] = []
        for w_t, b, act in layers:
            ops.append(_linear(w_t, b))
            if act:
                ops.append(_NUMPY_ACTIVATIONS[act])

        def numpy_actor(obs: np.ndarray) -> np.ndarray:
            x = obs
            for op in ops:
                x = op(x)
            return x
        return numpy_actor

    dtype = next(iter(detached.values())).dtype if detached else torch.float32

    def torch_actor(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(obs).to(dtype)
            return functional_call(target, detached, (x,), strict=False).numpy()
    return torch_actor


_ACT_CODES = {None: 0, nn.ReLU: 1, nn.Tanh: 2}


def _dense_layers(target: nn.Module, weights: dict[str, Tensor]
                  ) -> list[tuple[np.ndarray, np.ndarray, type | None]] | None:
    """``[(W^T (in, out), b (out,), activation after it or None)]`` float32 of an
    ``nn.Sequential`` of ``Linear`` layers each followed by at most one ReLU/Tanh;
    None for any other module."""
    if not isinstance(target, nn.Sequential):
        return None
    layers: list[tuple[np.ndarray, np.ndarray, type | None]] = []
    for idx, m in enumerate(target):
        if isinstance(m, nn.Linear):
            w_t = weights[f"{idx}.weight"].to(torch.float32).numpy().T.copy()
            b = (weights[f"{idx}.bias"].to(torch.float32).numpy().copy() if m.bias is not None
                 else np.zeros(w_t.shape[1], dtype=np.float32))
            layers.append((w_t, b, None))
        elif type(m) in _NUMPY_ACTIVATIONS and layers and layers[-1][2] is None:
            layers[-1] = (*layers[-1][:2], type(m))
        else:
            return None
    return layers or None


class CompiledActor:
    """The actor as one compiled call per step (:func:`_dense_logits`); ``actions``
    also samples in that call (:func:`_dense_actions`), which saves the NumPy
    add and arg-max of :class:`ActionSampler` (about 5 µs a step)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, type | None]]) -> None:
        self.w_ts = tuple(w for w, _, _ in layers)
        self.biases = tuple(b for _, b, _ in layers)
        self.acts = np.array([_ACT_CODES[a] for _, _, a in layers], dtype=np.int64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Logits ``(envs, actions)`` of observations ``(envs, d)``."""
        return _dense_logits(np.ascontiguousarray(obs, dtype=np.float32), self.w_ts,
                             self.biases, self.acts)

    @property
    def n_actions(self) -> int:
        return int(self.w_ts[-1].shape[1])

    def actions(self, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """``argmax(logits + noise)`` per row, ``(envs,)`` int64: the same draw
        as :class:`ActionSampler` makes from :meth:`__call__`'s logits."""
        return _dense_actions(np.ascontiguousarray(obs, dtype=np.float32), self.w_ts,
                              self.biases, self.acts, noise)


@jit.njit()
def _dense_logits(obs, w_ts, biases, acts):  # pragma: no cover - compiled
    """``obs (envs, d)`` through the layers: bias + matmul, then the activation
    (0 none, 1 ReLU, 2 tanh). Plain loops (the innermost over contiguous outputs,
    so it vectorises): no BLAS, hence no SciPy needed by Numba."""
    x = obs
    for i in range(len(w_ts)):
        w, b, act = w_ts[i], biases[i], acts[i]
        y = np.empty((x.shape[0], w.shape[1]), dtype=np.float32)
        for r in range(x.shape[0]):
            y[r, :] = b
            for k in range(x.shape[1]):
                xv = x[r, k]
                for c in range(w.shape[1]):
                    y[r, c] += xv * w[k, c]
            if act == 1:
                for c in range(w.shape[1]):
                    y[r, c] = max(y[r, c], np.float32(0))
            elif act == 2:
                for c in range(w.shape[1]):
                    y[r, c] = np.tanh(y[r, c])
        x = y
    return x


@jit.njit()
def _dense_actions(obs, w_ts, biases, acts, noise):  # pragma: no cover - compiled
    """``argmax(logits + noise)`` of each row (the first maximum, as NumPy's),
    summed in float64 as NumPy sums float32 logits and float64 noise."""
    logits = _dense_logits(obs, w_ts, biases, acts)
    out = np.empty(logits.shape[0], dtype=np.int64)
    for r in range(logits.shape[0]):
        best, top = 0, -np.inf
        for c in range(logits.shape[1]):
            v = np.float64(logits[r, c]) + noise[r, c]
            if v > top:
                best, top = c, v
        out[r] = best
    return out


def _linear(w_t: np.ndarray, b: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def linear(x: np.ndarray) -> np.ndarray:
        y = x @ w_t
        y += b
        return y
    return linear


class ColumnsActor:
    """An actor that reads only ``columns`` of each observation row (a multi-agent
    task's policy: its local observation and one-hot, :mod:`qtrl.rl.multiagent`);
    samples as the wrapped actor does."""

    def __init__(self, actor: Actor, columns: slice) -> None:
        self.actor, self.columns = actor, columns
        if hasattr(actor, "actions"):
            self.actions = lambda obs, noise: actor.actions(obs[:, columns], noise)
            self.n_actions = actor.n_actions

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.actor(obs[:, self.columns])


class GaussianActor:
    """A continuous action's actor: ``obs -> mean (envs, action_dim)`` and the
    Gaussian head's standard deviation ``std (action_dim,)`` to sample with."""

    def __init__(self, mean: Actor, std: np.ndarray) -> None:
        self.mean, self.std = mean, np.asarray(std, dtype=np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.mean(obs)


class ActionSampler:
    """:func:`sample_actions` for a roll-out: the noise of ``block`` steps is
    drawn in one RNG call (a few microseconds saved per step).

    Discrete actions: Gumbel-max over the logits. ``continuous``: the actor is
    a :class:`GaussianActor` (or gives the mean only, then ``greedy`` is
    implied) and the action ``mean + std · N(0, 1)``, float32 and unclipped
    (the roll-out clips what the environment gets).

    Deterministic given ``rng``: the same calls give the same actions.
    """

    def __init__(self, rng: np.random.Generator, block: int = 256,
                 continuous: bool = False) -> None:
        self.rng, self.block, self.continuous = rng, block, continuous
        self._noise = np.empty((0, 0, 0))
        self._next = 0

    def __call__(self, logits: np.ndarray, greedy: bool = False) -> np.ndarray:
        """One action per row of ``logits (envs, actions)``."""
        if greedy:
            return logits.argmax(1)
        return (logits + self._draw(logits.shape)).argmax(1)

    def act(self, actor: Actor, obs: np.ndarray, greedy: bool = False) -> np.ndarray:
        """One action per row of ``obs``: ``self(actor(obs), greedy)``, in one
        call when the actor samples itself (``actions(obs, noise)`` and
        ``n_actions``, as :class:`CompiledActor`: the same draws)."""
        if self.continuous:
            mean = actor(obs)
            std = getattr(actor, "std", None)
            if greedy or std is None:
                return mean
            return (mean + std * self._draw(mean.shape)).astype(np.float32)
        sample = getattr(actor, "actions", None)
        if greedy or sample is None:
            return self(actor(obs), greedy)
        return sample(obs, self._draw((obs.shape[0], actor.n_actions)))

    def _draw(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next step's Gumbel noise ``shape`` (a new block when used up)."""
        if self._next == len(self._noise) or self._noise.shape[1:] != shape:
            draw = self.rng.standard_normal if self.continuous else self.rng.gumbel
            self._noise = draw(size=(self.block, *shape))
            self._next = 0
        noise = self._noise[self._next]
        self._next += 1
        return noise


def sample_actions(logits: np.ndarray, rng: np.random.Generator,
                   greedy: bool = False) -> np.ndarray:
    """One action per row of ``logits (envs, actions)``: a draw from the softmax
    (Gumbel-max: ``argmax(logits + Gumbel noise)``), or the arg-max when ``greedy``."""
    if greedy:
        return logits.argmax(1)
    return (logits + rng.gumbel(size=logits.shape)).argmax(1)


@jit.warmup
def _warm() -> None:
    """Compile the actor for one hidden layer, the presets' (the number of
    layers is part of its signature): the logits and the fused draw."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    actor = make_actor(net, dict(net.named_parameters()))
    obs = np.zeros((1, 2), dtype=np.float32)
    actor(obs)
    ActionSampler(np.random.default_rng(0)).act(actor, obs)

"""The REINFORCE gradient of an update without an autograd graph, for the common case.

For a dense policy (:func:`qtrl.rl.policy_gradient.dense_plan`) made either by
Quantum-Train with the compiled ring-U3 kernels and mapping pass (exact, not
sharded) or trained directly, every step of the update is a compiled call on
NumPy arrays:

    circuit stage → mapping pass → roll-out → REINFORCE pass (dL/dw) →
    mapping backward → circuit adjoint → p.grad

The same kernels as the autograd path, called directly: no tensors, graph
nodes or accumulation between them, which on CartPole cost more than the
kernels' arithmetic. Anything else returns None and the caller runs the
autograd path.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from .. import mapping as mapping_pass
from ..generator import QuantumTrain
from .policy import Actor, ClassicalPolicy
from .policy_gradient import dense_pass, dense_plan
from .rollout import Resets, Rollout, play

__all__ = ["DirectStep", "direct_gradient"]


class DirectStep(NamedTuple):
    """An update's batch, loss parts and timings (seconds); gradients are in ``p.grad``."""

    batch: Rollout
    loss: float
    policy_loss: float
    entropy: float                 # mean per step
    t_generate: float
    t_rollout: float
    t_learn: float


def direct_gradient(model: QuantumTrain | ClassicalPolicy, envs: gym.vector.VectorEnv,
                    episodes: int, resets: Resets, rng: np.random.Generator, discount: float,
                    entropy: float, behaviour: Callable[[Actor], Actor] | None = None
                    ) -> DirectStep | None:
    """Steps 1–4 of an update as compiled calls (see the module docstring), the
    gradients left in every ``p.grad``; None where the autograd path must run."""
    plan = dense_plan(model.target)
    if plan is None:
        return None
    generator = _Generation.of(model) if isinstance(model, QuantumTrain) else None
    if isinstance(model, QuantumTrain) and generator is None:
        return None
    if generator is None and not _plain_parameters(model):
        return None
    t0 = time.perf_counter()
    weights = generator.forward() if generator else {
        name: p.detach() for name, p in model.target.named_parameters()}
    t1 = time.perf_counter()
    batch = play(model.target, weights, envs, episodes, rng, resets, discount, behaviour)
    t2 = time.perf_counter()
    layers, _ = plan
    names = [n for w_name, b_name, _ in layers for n in (w_name, b_name)]
    loss, policy, summed, grads = dense_pass(
        [weights[n].numpy() for n in names], tuple(act for _, _, act in layers), batch.obs,
        batch.actions, batch.returns, episodes, entropy / episodes)
    for p in model.parameters():
        p.grad = None
    if generator:
        generator.backward(dict(zip(names, grads, strict=True)))
    else:
        params = dict(model.target.named_parameters())
        for name, g in zip(names, grads, strict=True):
            params[name].grad = torch.from_numpy(np.ascontiguousarray(g))
    t3 = time.perf_counter()
    dtype = grads[0].dtype                # the loss as the autograd path returns it
    return DirectStep(batch, float(dtype.type(loss)), float(policy),
                      float(summed) / max(len(batch.actions), 1), t1 - t0, t2 - t1, t3 - t2)


def _plain_parameters(model: ClassicalPolicy) -> bool:
    """Every parameter trained, on the CPU, in one float dtype (the direct path
    writes a gradient to each)."""
    params = list(model.parameters())
    return bool(params) and all(p.requires_grad and p.is_cpu and p.dtype == params[0].dtype
                                and p.dtype in (torch.float32, torch.float64) for p in params)


class _Generation:
    """Quantum-Train's weight generation as NumPy stages, forward then backward
    (:func:`qtrl.mapping.ring_forward`, :func:`qtrl.mapping.ring_backward`)."""

    def __init__(self, qt: QuantumTrain, stage: Any, linears: list, code: int) -> None:
        self.qt, self.stage = qt, stage
        scale = qt.gamma * 2 ** (qt.n_qubits - 1)
        self.constants = (qt.chunk_size or qt.k, code, float(scale), float(qt.beta),
                          float(qt.alpha))
        self.params = [m.weight for m in linears] + [m.bias for m in linears]
        self.saved: tuple = ()

    @classmethod
    def of(cls, qt: QuantumTrain) -> _Generation | None:
        """The stages of ``qt`` (made once per model and kernel choice), or None."""
        stage = qt._ring_stage()
        if stage is None:
            return None
        known = _GENERATIONS.get(qt)
        if known is not None and known.stage == stage:
            return known
        plan = mapping_pass._plan(qt.mapping)
        if plan is None or not mapping_pass._fusable(qt.features, plan[0]):
            return None
        _GENERATIONS[qt] = made = cls(qt, stage, *plan)
        return made

    def forward(self) -> dict[str, Tensor]:
        """The generated weights, ``{name: tensor}`` (views of one array, no grad)."""
        qt = self.qt
        with torch.no_grad():
            flat, self.saved = mapping_pass.ring_forward(
                self.stage, qt.qnn.u3_angles, qt.qnn.cu3_angles, qt.features,
                self.constants, self.params)
        weights, at = {}, 0
        for name, shape in qt.spec:
            size = math.prod(shape)
            weights[name] = torch.from_numpy(flat[at:at + size].reshape(shape))
            at += size
        return weights

    def backward(self, grads: dict[str, np.ndarray]) -> None:
        """From the weights' gradients into the circuit angles' and mapping's ``p.grad``."""
        flat = np.concatenate([np.ascontiguousarray(grads[name]).ravel()
                               for name, _ in self.qt.spec])
        qnn = self.qt.qnn
        qnn.u3_angles.grad, qnn.cu3_angles.grad, map_grads = mapping_pass.ring_backward(
            self.saved, torch.from_numpy(flat))
        for p, g in zip(self.params, map_grads, strict=True):
            p.grad = g
        self.saved = ()


_GENERATIONS: weakref.WeakKeyDictionary[QuantumTrain, _Generation] = weakref.WeakKeyDictionary()

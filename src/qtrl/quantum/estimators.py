"""Gradients a QPU can give: parameter-shift and SPSA through any backend.

A real quantum processor returns (estimated) probabilities, never their
derivatives. :class:`ParameterShift` and :class:`SPSA` wrap a
:class:`~qtrl.quantum.backends.Backend` in a ``torch.autograd.Function``: the
forward pass evaluates the circuits' probabilities ``p = P(θ)`` on the backend,
the backward pass forms the vector–Jacobian product

    dL/dθ_j = Σ_i (dL/dp_i) ∂p_i/∂θ_j

from extra circuit evaluations at shifted angles. Only this probabilities →
angles step uses the estimator; everything downstream (post-processing, the
mapping model) stays classical autograd. ``grad="backprop"`` means plain
autograd through the exact torch simulator (statevector, or density matrix with
noise) and needs no estimator.

Parameter-shift rules (exact, no step size). An angle ``x`` entering the
circuit as ``exp(-i x G)`` gives probabilities that are trigonometric
polynomials whose frequencies are the differences of ``G``'s eigenvalues.

* RX, RY, RZ: ``G = σ/2``, eigenvalues ±1/2, one frequency 1: the two-term
  rule ``∂f = [f(x+π/2) − f(x−π/2)] / 2``.
* U3(θ, φ, λ) = e^{i(φ+λ)/2} RZ(φ) RY(θ) RZ(λ): each angle feeds one Pauli
  rotation (the phase is global), so the two-term rule for all three.
* CU3 = controlled U3. Its target block is ``diag(1, e^{iφ}) · RY-like(θ) ·
  diag(1, e^{iλ})`` (``U3(θ,φ,λ) = P(φ) U3(θ,0,0) P(λ)``, exactly, no phase), so
  φ and λ enter as controlled-phase gates ``exp(i x |11><11|)``: eigenvalues
  {0, 1}, one frequency 1, the two-term rule again. θ enters as a controlled
  RY, ``exp(-i θ |1><1| ⊗ Y/2)``: eigenvalues {0, ±1/2}, frequencies {1/2, 1},
  which needs the four-term rule

      ∂f = d₁ [f(x+π/2) − f(x−π/2)] − d₂ [f(x+3π/2) − f(x−3π/2)],
      d₁ = (√2+1)/(4√2),  d₂ = (√2−1)/(4√2)

  (exact for every ``a + b cos(x/2) + c sin(x/2) + d cos x + e sin x``; check:
  ``sin(x/2)`` → √2(d₁−d₂) = 1/2 and ``sin x`` → 2(d₁+d₂) = 1 at x = 0).

Under gate noise the rules stay exact only where an angle enters one gate
followed by fixed channels. The noise model of our torch and Qiskit backends
acts on the u3/cx decomposition, in which a CU3's φ feeds several basis gates
with noise between them: its probabilities gain frequency 2 in φ and the
two-term rule is off by about 1e-4 (3 qubits, p = 0.05; see
``tests/test_density.py``). Every other angle stays exact. For noisy
*training* use ``backprop`` through the density-matrix simulator, which
differentiates the noisy probabilities exactly.

All shifted circuits of one backward pass go to the backend as rows of one
batched call (in blocks of :attr:`GradientEstimator.max_batch` rows, to bound
memory). With ``C`` circuits of ``P`` angles the ring-U3 ansatz costs
``C · (2·3 + 4 + 2·2) · n·L`` evaluations per backward (the CU3's θ four, all
other angles two); SPSA costs ``2 · samples`` per circuit.

Several agents (QPUs) can share one backward pass: with
``partition=(rank, world_size)`` an estimator evaluates only its contiguous
share of the shifted circuits and returns the partial VJP over that share; the
shares of all ranks sum to the full VJP. Give it ``combine`` (a sum over agents,
e.g. an all-reduce) and it first averages the cotangent ``dL/dp`` over agents
(their losses differ), then sums the partial VJPs, so every agent returns the
full gradient of the agents' mean loss (see :meth:`GradientEstimator.set_partition`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import UserError
from .qpu import Backend
from .template import CircuitTemplate

__all__ = [
    "FOUR_TERM",
    "GRAD_METHODS",
    "SPSA",
    "TWO_TERM",
    "EvaluationCounts",
    "GradientEstimator",
    "ParameterShift",
    "ShiftRule",
    "check_gradient_setup",
    "make_estimator",
    "shift_rules",
]

log = logging.getLogger(__name__)

GRAD_METHODS = ("backprop", "parameter-shift", "spsa")

Combine = Callable[[Tensor], Tensor]
"""Sums a tensor over all agents and returns the sum (e.g. a wrapped ``all_reduce``)."""


class ShiftRule(NamedTuple):
    """``∂f(x) = Σ_s coefficients[s] · f(x + shifts[s])``."""

    shifts: tuple[float, ...]
    coefficients: tuple[float, ...]


TWO_TERM = ShiftRule((math.pi / 2, -math.pi / 2), (0.5, -0.5))
_D1 = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_D2 = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
FOUR_TERM = ShiftRule((math.pi / 2, -math.pi / 2, 3 * math.pi / 2, -3 * math.pi / 2),
                      (_D1, -_D1, -_D2, _D2))

# Gate name -> rule of each of its angles (derivation in the module docstring).
_RULES: dict[str, tuple[ShiftRule, ...]] = {
    "u3": (TWO_TERM, TWO_TERM, TWO_TERM),
    "rx": (TWO_TERM,), "ry": (TWO_TERM,), "rz": (TWO_TERM,),
    "cu3": (FOUR_TERM, TWO_TERM, TWO_TERM),
}


def shift_rules(template: CircuitTemplate) -> list[ShiftRule]:
    """The exact shift rule of every angle column of ``template``."""
    return [_RULES[name][i] for name, i in template.owner()]


def check_gradient_setup(backend: str, shots: int | None, noise: str | None,
                         grad: str) -> None:
    """Raise :class:`~qtrl.errors.UserError` for a combination that cannot work.

    ``backprop`` is autograd through our exact simulators: backend ``torch``, no
    shots, with or without noise (noise runs the density-matrix simulator of
    :mod:`qtrl.quantum.density`). Every backend (including torch) works with
    ``parameter-shift`` and ``spsa``, with or without shots. Which backends
    accept noise (torch, qiskit) is checked by
    :func:`~qtrl.quantum.backends.make_backend`.
    """
    if grad not in GRAD_METHODS:
        raise UserError(f"unknown gradient method {grad!r}; choose from {', '.join(GRAD_METHODS)}")
    if grad == "backprop" and (backend != "torch" or shots is not None):
        got = f"backend={backend!r}, shots={shots!r}" + (f", noise={noise!r}" if noise else "")
        raise UserError(
            f"grad='backprop' needs the exact torch backend, got {got}; valid: "
            f"backend='torch' with shots=None, with or without noise, for 'backprop', or "
            f"any backend (torch, pennylane, qiskit) with or without shots for "
            f"'parameter-shift' or 'spsa'")


@dataclass
class EvaluationCounts:
    """Circuit evaluations (one circuit = one row of a backend call) so far.

    ``last_backward`` is this agent's share of the latest backward pass,
    ``last_backward_total`` the whole pass over all agents.
    """

    forward: int = 0
    backward: int = 0
    last_backward: int = 0
    last_backward_total: int = 0
    backend_calls: int = 0

    def reset(self) -> None:
        self.forward = self.backward = self.last_backward = 0
        self.last_backward_total = self.backend_calls = 0


class _Plan:
    """The evaluations of one backward pass: rows of angles, and how each row's
    scalar ``s_e = Σ_i g[c_e, i] p_e,i`` enters the gradient."""

    size: int
    circuit: Tensor  # (E,) circuit of each evaluation

    def rows(self, lo: int, hi: int) -> Tensor:
        raise NotImplementedError

    def accumulate(self, grad: Tensor, lo: int, hi: int, scalars: Tensor) -> None:
        raise NotImplementedError


class _ShiftPlan(_Plan):
    def __init__(self, angles: Tensor, rules: list[ShiftRule]) -> None:
        c, p = angles.shape
        param, shift, coef = [], [], []
        for j, rule in enumerate(rules):
            for s, k in zip(rule.shifts, rule.coefficients):
                param.append(j)
                shift.append(s)
                coef.append(k)
        per_circuit = len(param)
        self.base = angles
        self.n_angles = p
        self.circuit = torch.arange(c).repeat_interleave(per_circuit)
        self.param = torch.tensor(param, dtype=torch.long).repeat(c)
        self.shift = torch.tensor(shift, dtype=angles.dtype).repeat(c)
        self.coef = torch.tensor(coef, dtype=torch.float64).repeat(c)
        self.size = c * per_circuit

    def rows(self, lo: int, hi: int) -> Tensor:
        rows = self.base[self.circuit[lo:hi]].clone()
        rows[torch.arange(hi - lo), self.param[lo:hi]] += self.shift[lo:hi]
        return rows

    def accumulate(self, grad: Tensor, lo: int, hi: int, scalars: Tensor) -> None:
        flat = self.circuit[lo:hi] * self.n_angles + self.param[lo:hi]
        grad.view(-1).index_add_(0, flat, scalars * self.coef[lo:hi])


class _SPSAPlan(_Plan):
    """Evaluation ``e = (sample, sign, circuit)``: angles ``θ_c ± step · Δ_{s,c}``."""

    def __init__(self, angles: Tensor, deltas: Tensor, step: float) -> None:
        samples, c, _ = deltas.shape
        self.base, self.deltas, self.step = angles, deltas, step
        self.samples = samples
        self.circuit = torch.arange(c).repeat(2 * samples)
        self.sign = torch.tensor([1.0, -1.0]).repeat_interleave(c).repeat(samples)
        self.sample = torch.arange(samples).repeat_interleave(2 * c)
        self.size = 2 * samples * c

    def rows(self, lo: int, hi: int) -> Tensor:
        c, s = self.circuit[lo:hi], self.sample[lo:hi]
        sign = self.sign[lo:hi].to(self.base.dtype)
        return self.base[c] + (self.step * sign)[:, None] * self.deltas[s, c].to(self.base.dtype)

    def accumulate(self, grad: Tensor, lo: int, hi: int, scalars: Tensor) -> None:
        c, s = self.circuit[lo:hi], self.sample[lo:hi]
        weight = scalars * self.sign[lo:hi].double() / (2 * self.step * self.samples)
        grad.index_add_(0, c, weight[:, None] * self.deltas[s, c].double())


class _EstimatedProbabilities(torch.autograd.Function):
    """Forward: backend probabilities. Backward: the estimator's VJP."""

    @staticmethod
    def forward(ctx: Any, angles: Tensor, estimator: GradientEstimator) -> Tensor:
        ctx.estimator = estimator
        ctx.save_for_backward(angles)
        return estimator.evaluate(angles.detach())

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_probs: Tensor) -> tuple[Tensor | None, None]:
        (angles,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        return ctx.estimator.vjp(angles.detach(), grad_probs).to(angles.dtype), None


class GradientEstimator:
    """Probabilities from a backend, gradients from extra circuit evaluations.

    Call it with the flat angles ``(circuits, P)`` (see
    :func:`~qtrl.quantum.backends.circuit_of`): it returns the probabilities
    ``(circuits, 2**n)`` as a differentiable tensor.

    Args:
        backend: where circuits run.
        template: the circuit (gate sequence) the angles belong to.
        partition: ``(rank, world_size)``: evaluate only this agent's share of a
            backward pass (see :meth:`set_partition`).
        combine: sum over agents (needed for a correct gradient when agents'
            losses differ; see :meth:`set_partition`).
        max_batch: most rows per backend call (default: about 2**22 amplitudes).
    """

    def __init__(self, backend: Backend, template: CircuitTemplate, *,
                 partition: tuple[int, int] | None = None, combine: Combine | None = None,
                 max_batch: int | None = None) -> None:
        self.backend = backend
        self.template = template
        self.counts = EvaluationCounts()
        self.max_batch = max_batch or max(1, 2**22 // 2**template.n_qubits)
        if self.max_batch < 1:
            raise UserError(f"max_batch must be >= 1, got {max_batch}")
        self.partition: tuple[int, int] = (0, 1)
        self.combine: Combine | None = None
        if partition is not None or combine is not None:
            self.set_partition(*(partition or (0, 1)), combine=combine)

    # ---------------------------------------------------------------- setup

    def set_partition(self, rank: int, world_size: int, combine: Combine | None = None) -> None:
        """Evaluate only share ``rank`` of ``world_size`` of each backward pass.

        Without ``combine`` the backward pass returns this share's *partial*
        VJP, computed with this agent's own ``dL/dp``: summing the partial VJPs
        of all agents gives the full VJP when they share ``dL/dp``.

        With ``combine`` (a function summing a tensor over all agents, such as
        ``lambda t: (dist.all_reduce(t), t)[1]``) the backward pass first
        replaces ``dL/dp`` by its mean over agents, then sums the partial VJPs:
        every agent returns the same, full gradient of the mean loss. An
        all-reduce *mean* of gradients afterwards leaves these unchanged.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"partition needs 0 <= rank < world_size, got rank={rank}, "
                            f"world_size={world_size}")
        self.partition = (rank, world_size)
        self.combine = combine

    def reseed(self, sampling: int, shared: int) -> None:
        """Restart the streams: ``sampling`` seeds this QPU's shots; ``shared`` the
        draws every agent must make alike (SPSA's directions)."""
        self.backend.reseed(sampling)

    def share(self, size: int) -> tuple[int, int]:
        """This agent's contiguous range ``[lo, hi)`` of ``size`` evaluations."""
        rank, world = self.partition
        return rank * size // world, (rank + 1) * size // world

    def backward_evaluations(self, circuits: int) -> int:
        """Circuit evaluations of one full backward pass (all agents) for ``circuits``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- running

    def __call__(self, angles: Tensor) -> Tensor:
        """Probabilities ``(circuits, 2**n)`` of angles ``(circuits, P)``, differentiable."""
        return _EstimatedProbabilities.apply(angles, self)

    def evaluate(self, angles: Tensor) -> Tensor:
        """Backend probabilities of ``angles`` rows, in blocks of ``max_batch`` (counted)."""
        outs = []
        for lo in range(0, angles.shape[0], self.max_batch):
            outs.append(self.backend.probabilities(self.template, angles[lo:lo + self.max_batch]))
            self.counts.backend_calls += 1
        self.counts.forward += angles.shape[0]
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _plan(self, angles: Tensor) -> _Plan:
        raise NotImplementedError

    def vjp(self, angles: Tensor, grad_probs: Tensor) -> Tensor:
        """``Σ_i g_i ∂p_i/∂θ`` over this agent's share: ``(circuits, P)``, float64.

        ``grad_probs``: ``dL/dp``, ``(circuits, 2**n)``.
        """
        world = self.partition[1]
        g = grad_probs.detach().double()
        if self.combine is not None and world > 1:
            g = self.combine(g.clone()) / world
        plan = self._plan(angles)
        grad = torch.zeros(angles.shape, dtype=torch.float64)
        lo, hi = self.share(plan.size)
        for start in range(lo, hi, self.max_batch):
            stop = min(hi, start + self.max_batch)
            probs = self.backend.probabilities(self.template, plan.rows(start, stop)).double()
            self.counts.backend_calls += 1
            scalars = (probs * g[plan.circuit[start:stop]]).sum(-1)
            plan.accumulate(grad, start, stop, scalars)
        self.counts.backward += hi - lo
        self.counts.last_backward = hi - lo
        self.counts.last_backward_total = plan.size
        if self.combine is not None and world > 1:
            grad = self.combine(grad)
        return grad


class ParameterShift(GradientEstimator):
    """Exact gradients by parameter-shift rules (two-term, four-term for CU3's θ).

    See the module docstring for the rules; ``shift_rules(template)`` lists
    the rule of every angle.
    """

    def __init__(self, backend: Backend, template: CircuitTemplate, **kwargs: Any) -> None:
        super().__init__(backend, template, **kwargs)
        self.rules = shift_rules(template)

    def backward_evaluations(self, circuits: int) -> int:
        return circuits * sum(len(r.shifts) for r in self.rules)

    def _plan(self, angles: Tensor) -> _Plan:
        return _ShiftPlan(angles, self.rules)


class SPSA(GradientEstimator):
    """Simultaneous-perturbation estimate of the VJP (Spall 1992).

    For a Rademacher direction ``Δ`` (±1 per angle, seeded) and step ``c``:
    ``ĝ = [g·p(θ + cΔ) − g·p(θ − cΔ)] / (2c) · Δ``, averaged over ``samples``
    directions; an unbiased estimate up to ``O(c²)``. Each circuit of the batch
    gets its own direction. Cost: ``2 · samples`` evaluations per circuit.

    Args:
        c: perturbation step (radians).
        samples: directions averaged per backward pass.
        seed: seed of the direction generator (advances every backward pass).
    """

    def __init__(self, backend: Backend, template: CircuitTemplate, c: float = 0.1,
                 samples: int = 1, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(backend, template, **kwargs)
        if not c > 0 or not math.isfinite(c):
            raise UserError(f"SPSA step c must be a positive number, got {c!r}")
        if samples < 1:
            raise UserError(f"SPSA samples must be >= 1, got {samples!r}")
        self.c, self.samples = float(c), int(samples)
        self._generator = torch.Generator().manual_seed(seed)

    def reseed(self, sampling: int, shared: int) -> None:
        super().reseed(sampling, shared)
        self._generator.manual_seed(shared)

    def backward_evaluations(self, circuits: int) -> int:
        return 2 * self.samples * circuits

    def directions(self, circuits: int) -> Tensor:
        """Next ``(samples, circuits, P)`` Rademacher ±1 directions (advances the seed)."""
        bits = torch.randint(0, 2, (self.samples, circuits, self.template.n_angles),
                             generator=self._generator)
        return bits.to(torch.int8) * 2 - 1

    def _plan(self, angles: Tensor) -> _Plan:
        return _SPSAPlan(angles, self.directions(angles.shape[0]), self.c)


ESTIMATORS: dict[str, type[GradientEstimator]] = {"parameter-shift": ParameterShift,
                                                  "spsa": SPSA}


def make_estimator(grad: str, backend: Backend, template: CircuitTemplate,
                   **options: Any) -> GradientEstimator:
    """The estimator named ``grad`` (``parameter-shift`` or ``spsa``) on ``backend``.

    ``options`` go to its constructor: ``partition``, ``combine``, ``max_batch``;
    for SPSA also ``c``, ``samples``, ``seed``.
    """
    if grad not in ESTIMATORS:
        raise UserError(f"no estimator for gradient method {grad!r}; choose from "
                        f"{', '.join(ESTIMATORS)} ('backprop' is plain autograd)")
    try:
        return ESTIMATORS[grad](backend, template, **options)
    except TypeError as err:
        raise UserError(f"bad options for {grad!r}: {err}") from err

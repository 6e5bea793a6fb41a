"""Quantum-Train: a parameterised circuit plus a small mapping model generate
every weight of a classical network.

For a target with ``k`` trainable weights, a circuit on ``n = ceil(log2 k)``
qubits gives ``2^n >= k`` basis-state probabilities ``p_i``. Weight ``i`` is

    x_i = (β · tanh(γ · 2^(n-1) · p_i))^α,   x ← x − mean(x)
    w_i = f([bits(i) as ±1, x_i]) ,          w ← w − mean(w)

where ``f`` is the mapping MLP (Liu et al., Quantum-Train; Chen et al.,
Dist-QTRL, arXiv:2412.08845). Only the circuit angles and ``f`` are trained.

Chunked generation splits the ``k`` weights into ``Q`` chunks, each made by its
own circuit of ``ceil(log2 ceil(k/Q))`` qubits; the chunk index enters the
mapping model as extra ±1 bits. The ``Q`` circuits run as one batched simulation.

Weight order: the target's ``named_parameters()`` order, each tensor flattened
row-major — the same order as the reference's ``state_dict`` for its networks.
Basis state ``i`` is read with wire 0 as its most significant bit.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from .errors import UserError
from .mapping import ACTIVATIONS, generate_from_ring, generate_weights, mlp
from .quantum.ansatz import ANSATZE, Ansatz, RingStage
from .quantum.backends import Backend, circuit_of, make_backend, parse_noise
from .quantum.estimators import (
    GradientEstimator,
    check_gradient_setup,
    make_estimator,
)
from .quantum.memory import check_statevector_fits
from .quantum.qasm import ansatz_to_qasm
from .quantum.sharding import RowShards, gather_shards
from .run.seeds import Stream, integer_seed

__all__ = ["ACTIVATIONS", "ParameterCounts", "QuantumTrain", "call_with", "check_chunks",
           "qubits_for"]

log = logging.getLogger(__name__)

def qubits_for(k: int) -> int:
    """Qubits needed to give every one of ``k`` weights its own basis state."""
    if k < 1:
        raise ValueError(f"need at least one weight, got k={k}")
    return max(1, math.ceil(math.log2(k)))


@dataclass(frozen=True)
class ParameterCounts:
    """What Quantum-Train trains, against what the target would train."""

    target_weights: int      # k: trainable weights of the classical network
    qubits: int              # n: qubits per circuit
    chunks: int              # Q: circuits (chunks)
    layers: int              # L: ansatz layers
    qnn: int                 # circuit angles (all chunks)
    mapping: int             # mapping-model parameters
    total: int               # qnn + mapping

    @property
    def compression(self) -> float:
        """k / trainable: how many times fewer parameters are trained."""
        return self.target_weights / self.total

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "compression": self.compression}


def check_chunks(chunks: int, k: int) -> None:
    """Every chunk must get its own circuit of >= 2 qubits and at least one weight."""
    def ok(q: int) -> bool:
        return q == 1 or (q >= 2 and math.ceil(k / q) >= 3
                          and math.ceil(k / math.ceil(k / q)) == q)
    if not ok(chunks):
        top = max(1, min(chunks, k // 3))
        below = next(q for q in range(top, 0, -1) if ok(q))
        above = next((q for q in range(top + 1, k // 3 + 1) if ok(q)), None)
        near = [below] + ([above] if above is not None and chunks < above else [])
        raise UserError(f"chunks={chunks} does not split k={k} weights into that many "
                        f"circuits of >= 2 qubits each (chunks of ceil(k/Q) weights); "
                        f"try {' or '.join(map(str, near))}")


def _signed_bits(count: int, width: int) -> Tensor:
    """Rows ``0..count-1`` written as ``width`` bits, MSB first, as ±1: ``(count, width)``."""
    idx = torch.arange(count).unsqueeze(1)
    shifts = torch.arange(width - 1, -1, -1)
    return ((idx >> shifts) & 1).float() * 2 - 1


def call_with(target: nn.Module, weights: Mapping[str, Tensor], args: tuple,
              kwargs: Mapping[str, Any] | None = None) -> Any:
    """``target(*args, **kwargs)`` with ``weights`` in place of its parameters of
    those names, differentiable in them (``functional_call(..., strict=False)``).

    An ``nn.Sequential`` of ``Linear`` layers and modules without parameters or
    buffers (the policies :func:`qtrl.presets.build_policy` makes) runs as its
    layers' own ops, ``F.linear`` with the weights given: the same computation,
    bit for bit, without ``functional_call``'s re-binding of every parameter on
    each call (about half of a CartPole log-probability pass).
    """
    if kwargs or len(args) != 1 or not _plain_sequential(target):
        return functional_call(target, dict(weights), args, kwargs, strict=False)
    x = args[0]
    for name, module in target.named_children():
        if isinstance(module, nn.Linear):
            bias = weights.get(f"{name}.bias", module.bias)
            x = F.linear(x, weights.get(f"{name}.weight", module.weight), bias)
        else:
            x = module(x)
    return x


_PLAIN: weakref.WeakKeyDictionary[nn.Module, tuple[int, bool]] = weakref.WeakKeyDictionary()


def _plain_sequential(target: nn.Module) -> bool:
    """Whether :func:`call_with` may run ``target`` layer by layer; looked up
    once per module and layer count (the walk cost ~20 µs per update)."""
    size = len(target) if isinstance(target, nn.Sequential) else -1
    known = _PLAIN.get(target)
    if known is None or known[0] != size:
        plain = size >= 0 and all(
            type(m) is nn.Linear or (next(m.parameters(), None) is None
                                     and next(m.buffers(), None) is None)
            for m in target)
        known = _PLAIN[target] = (size, plain)
    return known[1]


class QuantumTrain(nn.Module):
    """Generate all weights of ``target`` from a circuit and a mapping model.

    Args:
        target: any ``nn.Module``; its trainable parameters are generated, its
            buffers (norm statistics, …) are used as they are.
        layers: ansatz layers ``L``.
        mapping_hidden: hidden sizes of the mapping MLP.
        gamma, beta, alpha: post-processing constants of the probabilities.
        chunks: ``Q`` circuits, each generating ``ceil(k/Q)`` weights.
        ansatz: name in :data:`qtrl.quantum.ansatz.ANSATZE`.
        mapping_activation: activation between mapping layers
            (``"none"`` is the reference's purely linear mapping).
        dtype: real dtype of the angles (float32 → complex64 simulation).
        backend: where the circuits run: ``torch`` (ours), ``pennylane``
            (``pennylane:lightning.qubit``), ``qiskit`` (see
            :func:`qtrl.quantum.backends.make_backend`).
        shots: samples per circuit; ``None`` = exact probabilities.
        noise: Qiskit Aer's noise model, e.g. ``"depolarizing:0.01,readout:0.02"``,
            on backend ``torch`` (exact density matrices; ``backprop`` works) or
            ``qiskit`` (Aer).
        grad: ``backprop`` (autograd through the exact torch simulator, the
            default), ``parameter-shift`` or ``spsa`` (circuit angles' gradients
            from extra circuit runs; see :mod:`qtrl.quantum.estimators`).
        seed: seed of the backend's sampling and of SPSA's directions.
        grad_options: extra options of the estimator (SPSA ``c``, ``samples``;
            ``max_batch``; ``partition``, ``combine``).
    """

    def __init__(self, target: nn.Module, layers: int, mapping_hidden: Sequence[int] = (10, 10, 10),
                 gamma: float = 0.1, beta: float = 1.0, alpha: float = 1.0, chunks: int = 1,
                 ansatz: str = "ring-u3", mapping_activation: str = "tanh",
                 dtype: torch.dtype = torch.float32, backend: str = "torch",
                 shots: int | None = None, noise: str | None = None, grad: str = "backprop",
                 seed: int = 0, grad_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        check_gradient_setup(backend, shots, noise, grad)
        if ansatz not in ANSATZE:
            raise UserError(f"unknown ansatz {ansatz!r}; choose from {sorted(ANSATZE)}")
        if mapping_activation not in ACTIVATIONS:
            raise UserError(f"unknown mapping activation {mapping_activation!r}; "
                             f"choose from {sorted(ACTIVATIONS)}")
        if layers < 1:
            raise UserError(f"layers must be >= 1, got {layers}")
        # Kept out of the module tree so that .parameters() is only what we train.
        self._target = (target,)
        self.spec = [(name, tuple(p.shape)) for name, p in target.named_parameters()
                     if p.requires_grad]
        self.k = sum(math.prod(shape) for _, shape in self.spec)
        check_chunks(chunks, self.k)
        self.chunks = chunks
        self.chunk_size = math.ceil(self.k / chunks)
        self.n_qubits = qubits_for(self.chunk_size) if chunks > 1 else qubits_for(self.k)
        self.chunk_bits = math.ceil(math.log2(chunks)) if chunks > 1 else 0
        self.gamma, self.beta, self.alpha = gamma, beta, alpha
        self.mapping_hidden = tuple(mapping_hidden)
        check_statevector_fits(self.n_qubits, chunks, dtype)
        self.qnn: Ansatz = ANSATZE[ansatz](self.n_qubits, layers, circuits=chunks, dtype=dtype)
        width = self.n_qubits + self.chunk_bits + 1
        self.mapping = mlp([width, *self.mapping_hidden, 1], mapping_activation)
        self.register_buffer("features", self._index_features(), persistent=False)
        self.backend_name, self.shots, self.noise, self.grad = backend, shots, noise, grad
        # Not a module: the estimator holds the backend (an SDK object), no parameters.
        self._estimator: tuple[GradientEstimator, ...] = ()
        self._shards: tuple[RowShards, ...] = ()  # chunks spread over agents (spread_chunks)
        # Torch + noise + backprop: autograd through our density-matrix simulator.
        self._noisy_backend: tuple[Backend, ...] = ()
        if grad == "backprop" and parse_noise(noise):
            self._noisy_backend = (make_backend(backend, noise=noise, seed=seed),)
        if grad != "backprop":
            options = dict(grad_options or {})
            if grad == "spsa":  # a stream of its own, apart from the backend's sampling
                options.setdefault("seed", integer_seed(seed, Stream.SPSA_SHARED))
            qpu = make_backend(backend, shots=shots, noise=noise, seed=seed)
            template, _ = circuit_of(self.qnn)
            self._estimator = (make_estimator(grad, qpu, template, **options),)

    @property
    def estimator(self) -> GradientEstimator | None:
        """The circuit gradient estimator (counts, partition), or None for backprop."""
        return self._estimator[0] if self._estimator else None

    @property
    def target(self) -> nn.Module:
        """The classical network whose weights are generated (not trained directly)."""
        return self._target[0]

    def _index_features(self) -> Tensor:
        """±1 bits of each weight's basis state (and chunk), ``(k, n + chunk_bits)``."""
        local = _signed_bits(2**self.n_qubits, self.n_qubits)[: self.chunk_size]
        if self.chunks == 1:
            return local[: self.k].clone()
        chunk = _signed_bits(self.chunks, self.chunk_bits)
        feats = torch.cat((chunk.repeat_interleave(self.chunk_size, 0),
                           local.repeat(self.chunks, 1)), 1)
        return feats[: self.k].clone()

    def spread_chunks(self, shards: RowShards | None) -> None:
        """Evaluate only this agent's share of the ``Q`` chunk circuits (one QPU
        each), all-gathered every generation; ``None`` evaluates all of them here.

        Every agent must then generate at the same points (the gather is a
        collective). The gradients stay those of the unsplit generator once
        averaged over agents (see :mod:`qtrl.quantum.sharding`).
        """
        if shards is not None and shards.rows != self.chunks:
            raise ValueError(f"shards of {shards.rows} rows for {self.chunks} chunk circuits")
        self._shards = () if shards is None else (shards,)

    def reseed(self, sampling: int, shared: int) -> None:
        """Restart the circuits' random streams: ``sampling`` seeds this QPU's shots,
        ``shared`` the draws all agents make alike (SPSA's directions); exact
        backprop has none. Training reseeds every update (see
        :func:`qtrl.loops.common.reseed_circuits`), so a resumed run samples
        exactly what an uninterrupted one does."""
        if self._estimator:
            self._estimator[0].reseed(sampling, shared)

    @property
    def chunk_shards(self) -> RowShards | None:
        """How the chunk circuits are spread over agents (None: all evaluated here)."""
        return self._shards[0] if self._shards else None

    def _circuit_probabilities(self, lo: int, hi: int) -> Tensor:
        """Probabilities of chunk circuits ``lo..hi-1``, ``(hi - lo, 2^n)``.

        Who evaluates them follows the gradient method and the noise: the
        estimator's backend, the torch backend (noise, by autograd), or the
        ansatz itself; each runs the simulator that
        :func:`~qtrl.quantum.simulate.choose_path` picks.
        """
        if self._estimator:
            _, angles = circuit_of(self.qnn)            # (Q, P), differentiable
            return self._estimator[0](angles[lo:hi])    # from the backend
        if self._noisy_backend:                         # exact noisy, by autograd
            template, angles = circuit_of(self.qnn)
            return self._noisy_backend[0].probabilities(template, angles[lo:hi])
        return self.qnn(slice(lo, hi))

    def circuit_probabilities(self) -> Tensor:
        """Probabilities of every chunk circuit, ``(Q, 2^n)`` (gathered from the
        agents when the chunks are spread over them)."""
        if self._shards:
            mine = self._shards[0].mine
            return gather_shards(self._circuit_probabilities(mine.start, mine.stop),
                                 self._shards[0], *self.qnn.parameters())
        return self._circuit_probabilities(0, self.chunks)

    def probabilities(self) -> Tensor:
        """Circuit probabilities of the ``k`` weights' basis states, ``(k,)``."""
        return self.circuit_probabilities()[:, : self.chunk_size].reshape(-1)[: self.k]

    def generate_flat(self) -> Tensor:
        """All ``k`` generated weights in order, ``(k,)``."""
        scale = self.gamma * 2 ** (self.n_qubits - 1)
        stage = self._ring_stage()
        if stage is not None:   # the common case: circuit and mapping in one node
            return generate_from_ring(stage, self.qnn.u3_angles, self.qnn.cu3_angles,
                                      self.features, self.mapping, scale, self.beta,
                                      self.alpha, self.chunk_size)
        return generate_weights(self.circuit_probabilities(), self.features, self.mapping,
                                scale, self.beta, self.alpha, self.chunk_size)

    def _ring_stage(self) -> RingStage | None:
        """The ring-U3 kernels as stages when every chunk circuit runs here by
        them (the ansatz's own path, not spread over agents), else None."""
        if self._estimator or self._noisy_backend or self._shards:
            return None
        return self.qnn.stage()  # None unless choose_path picks the compiled kernels

    def generate(self) -> dict[str, Tensor]:
        """Generated weights as ``{parameter name: tensor}`` of the target's shapes."""
        # One split (one backward node) rather than a slice per tensor, each of
        # whose backward passes would fill a k-sized zero tensor.
        parts = self.generate_flat().split([math.prod(shape) for _, shape in self.spec])
        return {name: part.view(shape) for (name, shape), part in zip(self.spec, parts,
                                                                       strict=True)}

    def forward(self, *args: Any, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> Any:
        """Run the target with generated weights (``weights`` reuses a generation)."""
        params = self.generate() if weights is None else weights
        return call_with(self.target, params, args, kwargs)

    @torch.no_grad()
    def materialize(self) -> nn.Module:
        """A plain copy of the target holding the generated weights: no quantum part.

        Evaluates every chunk circuit here, even when they are spread over agents."""
        import copy
        net = copy.deepcopy(self.target)
        shards, self._shards = self._shards, ()  # all chunks here: not a collective
        try:
            weights = self.generate()
        finally:
            self._shards = shards
        for name, p in net.named_parameters():
            if name in weights:
                p.copy_(weights[name])
        return net

    def to_qasm(self, chunk: int = 0, measure: bool = False) -> str:
        """The circuit of ``chunk`` with its current angles as OpenQASM 2.0.

        Our wire ``j`` is written as ``q[n-1-j]``, so a measured bitstring read as
        a binary number (Qiskit's order) is the index ``i`` of the weight that
        basis state feeds (within the chunk).
        """
        return ansatz_to_qasm(self.qnn, chunk, measure)

    def parameter_counts(self) -> ParameterCounts:
        qnn = sum(p.numel() for p in self.qnn.parameters())
        mapping = sum(p.numel() for p in self.mapping.parameters())
        return ParameterCounts(self.k, self.n_qubits, self.chunks, self.qnn.layers,
                               qnn, mapping, qnn + mapping)

"""The one simulator dispatch: which path computes a circuit's probabilities.

Every place that runs circuits by our simulators asks :func:`choose_path` and
runs what it says: an ansatz's ``forward`` and ``stage``
(:mod:`qtrl.quantum.ansatz`), the torch backend on rows of angles
(:class:`~qtrl.quantum.backends.TorchBackend`, which gradient estimators, shots
and noise go through), and :func:`~qtrl.quantum.statevector.run_layers`
(rotating frames or not). The rules, and the constants they use, live here and
nowhere else. The PennyLane and Qiskit backends are picked by their names
(:func:`~qtrl.quantum.backends.make_backend`); the table lists them too.

Every path gives the same probabilities up to rounding; ``tests/test_simulate.py``
checks each against PennyLane's ``default.qubit``. Each decision is logged at
DEBUG level with the path in the record's ``simulator_path`` attribute.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence

import torch

from ..errors import UserError
from . import frames
from .compiled import available as kernels_available
from .noise import NoiseSpec

__all__ = [
    "COMPILED_MAX_QUBITS",
    "FRAMES_MIN_STATE",
    "MANY_ROWS",
    "RING_KERNELS",
    "SWEEP_MAX_QUBITS",
    "SimPath",
    "choose_path",
    "default_fuse_qubits",
    "window_qubits",
]

log = logging.getLogger(__name__)


class SimPath(enum.Enum):
    """A way to compute probabilities; :func:`choose_path` says when each is taken."""

    COMPILED = "compiled"
    """Ring-U3 whole-circuit Numba kernels in complex128 (:mod:`qtrl.quantum.compiled`)."""
    WIDE = "wide"
    """Ring-U3 split-complex Numba kernels in the angles' precision (:mod:`qtrl.quantum.wide`)."""
    SWEEP = "sweep"
    """Torch: the ring's gates in windows swept round the ring
    (:func:`~qtrl.quantum.statevector.run_sweep`)."""
    LAYERS = "layers"
    """Torch: the fused layer template, adjoint method
    (:func:`~qtrl.quantum.statevector.run_layers`)."""
    FRAMES = "frames"
    """Torch: :func:`~qtrl.quantum.statevector.run_layers` in rotating frames
    (:mod:`qtrl.quantum.frames`)."""
    GATES = "gates"
    """Torch: each row's gate matrices, fused into windows, one batched matmul each
    (:class:`~qtrl.quantum.backends.TorchBackend`)."""
    DENSITY = "density"
    """Exact density matrices under depolarizing noise (:mod:`qtrl.quantum.density`)."""
    PENNYLANE = "pennylane"
    """A PennyLane device (:class:`~qtrl.quantum.backends.PennyLaneBackend`)."""
    QISKIT = "qiskit"
    """Qiskit Aer (:class:`~qtrl.quantum.aer.QiskitBackend`)."""


RING_KERNELS = frozenset({SimPath.COMPILED, SimPath.WIDE})
"""The compiled ring-U3 kernels (:func:`qtrl.quantum.ansatz.ring_probabilities`)."""

COMPILED_MAX_QUBITS = 12
"""Up to this many qubits float64 angles run the complex128 kernels of
:mod:`qtrl.quantum.compiled` (the state fits in L1). Everything else runs the
split-complex kernels of :mod:`qtrl.quantum.wide` in the angles' precision:
float32 angles (training's default) at every size, since complex64 pairs
vectorise twice as wide."""

SWEEP_MAX_QUBITS = 14
"""Up to this many qubits the torch ring-U3 simulation runs by
:func:`~qtrl.quantum.statevector.run_sweep` (fewer, fuller windows), above by
the fused layer template."""

MANY_ROWS = 32
"""From this many rows a backend call is compute-bound: its sweep windows are
2 qubits wide (the fewest flops); fewer rows are overhead-bound (wide windows)."""

FRAMES_MIN_STATE = 2**15
"""Smallest state that runs in rotating frames: below it per-call overhead
dominates and the plain kernels are as fast."""


def default_fuse_qubits(n_qubits: int) -> int:
    """Fusion window width that measured fastest on a CPU for ``n`` qubits.

    Small circuits are overhead-bound (wide windows: few ops); large ones are
    compute-bound in the window matmul (narrow windows).
    """
    return 5 if n_qubits <= 14 else 3


def window_qubits(n_qubits: int, rows: int | None = None,
                  fuse_qubits: int | None = None) -> int:
    """Width of the torch windows: the ansatz's ``fuse_qubits`` if given; else 2
    for a backend call of at least :data:`MANY_ROWS` rows, else
    :func:`default_fuse_qubits`."""
    if fuse_qubits is not None:
        return fuse_qubits
    if rows is not None and rows >= MANY_ROWS:
        return 2
    return default_fuse_qubits(n_qubits)


def choose_path(n_qubits: int, dtype: torch.dtype, device: torch.device | str = "cpu", *,
                ring: bool = False, backend: str = "torch", noise: NoiseSpec | None = None,
                rows: int | None = None, compiled: bool = True, fuse_qubits: int | None = None,
                windows: Sequence[Sequence[int]] | None = None,
                force: SimPath | None = None) -> SimPath:
    """The path that computes the probabilities of a circuit: the first row that fits.

    =========  =========  =============  =========  =======  =========  ======  =====  ======
    path       backend    noise          ansatz     dtype    qubits n   device  Numba  caller
    =========  =========  =============  =========  =======  =========  ======  =====  ======
    PENNYLANE  pennylane  none           any        any      any        any     -      rows
    QISKIT     qiskit     any            any        any      any        any     -      rows
    DENSITY    torch      depolarizing   any        any      any        any     -      rows
    COMPILED   torch      readout or no  ring (a)   float64  <= 12      CPU     yes    either
    WIDE       torch      readout or no  ring (a)   float32  any        CPU     yes    either
    WIDE       torch      readout or no  ring (a)   float64  >= 13      CPU     yes    either
    SWEEP      torch      readout or no  ring       any      (b)        any     (c)    either
    GATES      torch      readout or no  other (d)  any      any        any     -      rows
    FRAMES     torch      none           other (d)  any      >= 15 (e)  CPU     -      module
    LAYERS     torch      none           other (d)  any      any        any     -      module
    =========  =========  =============  =========  =======  =========  ======  =====  ======

    *caller*: ``module`` is an ansatz running its own angles (its ``forward``;
    the generator's fused ``stage``): plain backprop, no noise, no shots.
    ``rows`` is a backend call on rows of angles (``rows`` given): a gradient
    estimator (parameter-shift, SPSA) sends the circuits and every shifted copy
    as rows, and shots or noise send the circuits through the backend too
    (:class:`~qtrl.generator.QuantumTrain`). Neither shots nor readout noise
    change the path: the backend samples, or applies the readout error to, the
    path's exact probabilities.

    (a) And the ansatz allows the kernels (``compiled=True``, the default).
    (b) ``2 <= g <= n <= SWEEP_MAX_QUBITS`` for the window width
    ``g`` = :func:`window_qubits` (the ansatz's own; for rows, 2 from
    :data:`MANY_ROWS` rows on, else :func:`default_fuse_qubits`).
    (c) When the kernels are not taken: no Numba, off the CPU, or ``compiled=False``.
    (d) Any circuit the rows above did not take, ring-U3 included.
    (e) And ``windows`` given, each consecutive round the ring and leaving
    ``2**MIN_BELOW_BITS`` trailing amplitudes (:func:`qtrl.quantum.frames.fits`).
    Only :func:`~qtrl.quantum.statevector.run_layers` knows its windows: an
    ansatz asking without them is told LAYERS, and ``run_layers`` then asks
    again with its windows.

    Args:
        n_qubits: qubits of the circuit.
        dtype: dtype of the angles (real) or of the state (complex).
        device: where the angles are.
        ring: the circuit is the ring-U3 ansatz (:class:`~qtrl.quantum.ansatz.RingU3Ansatz`).
        backend: ``torch``, ``pennylane[:device]`` or ``qiskit``.
        noise: the backend's noise (readout alone keeps the noise-free path).
        rows: angle rows of one backend call; ``None`` for an ansatz module.
        compiled: the ansatz allows the compiled kernels.
        fuse_qubits: the ansatz's window width (``None``: :func:`window_qubits`' default).
        windows: wires of the fused operations (``run_layers``), for FRAMES.
        force: run this path if it can run the circuit (a check or comparison).
    Returns:
        The path.
    Raises:
        UserError: an unknown backend, or a ``force`` path that cannot run the circuit.
    """
    kind = backend.partition(":")[0]
    if kind == "pennylane":
        path, able = SimPath.PENNYLANE, {SimPath.PENNYLANE}
    elif kind == "qiskit":
        path, able = SimPath.QISKIT, {SimPath.QISKIT}
    elif kind != "torch":
        raise UserError(f"unknown backend {backend!r}; choose from torch, pennylane, "
                        f"pennylane:lightning.qubit, qiskit")
    else:
        cpu = (device if isinstance(device, torch.device) else torch.device(device)).type == "cpu"
        width = window_qubits(n_qubits, rows, fuse_qubits)
        kernels = ring and compiled and cpu and n_qubits >= 2 and kernels_available()
        sweep = ring and 2 <= width <= n_qubits <= SWEEP_MAX_QUBITS
        in_frames = (rows is None and bool(windows) and cpu
                     and 2**n_qubits >= FRAMES_MIN_STATE and frames.fits(windows, n_qubits))
        if noise is not None and noise.depolarizing:
            path = SimPath.DENSITY
        elif kernels:
            big = dtype != torch.float64 or n_qubits > COMPILED_MAX_QUBITS
            path = SimPath.WIDE if big else SimPath.COMPILED
        elif sweep:
            path = SimPath.SWEEP
        elif rows is not None:
            path = SimPath.GATES
        else:
            path = SimPath.FRAMES if in_frames else SimPath.LAYERS
        if rows is not None:  # what a backend call can run
            able = {SimPath.DENSITY, SimPath.GATES} | ({SimPath.SWEEP} if sweep else set())
            able |= RING_KERNELS if kernels else set()
        else:                 # run_layers: in frames or not
            able = {path} | ({SimPath.LAYERS, SimPath.FRAMES} if in_frames else set())
    if force is not None and force is not path:
        if force not in able:
            raise UserError(
                f"path {force.value!r} cannot run this circuit ({n_qubits} qubits, "
                f"{'ring-U3' if ring else 'not ring-U3'}, {dtype}, {device}, backend "
                f"{backend!r}); it can run by {', '.join(sorted(p.value for p in able))}")
        path = force
    log.debug("%s path for %d qubits, %s on %s (backend %s)", path.value, n_qubits, dtype,
              device, backend, extra={"simulator_path": path})
    return path

"""Memory estimates made before a statevector is allocated.

A configuration that cannot fit gets one clear error naming the size, instead
of an out-of-memory kill halfway through a run.
"""

from __future__ import annotations

import psutil
import torch

from .gates import complex_dtype_for

__all__ = ["StatevectorTooLarge", "check_statevector_fits", "human_bytes", "statevector_bytes"]

# Live states at the peak of forward + backward: the final state, the stacked
# (state, adjoint) pair walked back, a matmul output, the probabilities and
# their gradient. Measured peak RSS stays below this multiple of one state.
PEAK_STATES = 6


class StatevectorTooLarge(MemoryError):
    """The requested circuit's statevector would not fit in memory."""


def statevector_bytes(n_qubits: int, circuits: int = 1,
                      dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one state of ``circuits`` batched ``n``-qubit circuits."""
    itemsize = torch.empty(0, dtype=complex_dtype_for(dtype)).element_size()
    return circuits * (2**n_qubits) * itemsize


def human_bytes(n: float) -> str:
    """``n`` bytes with a binary unit, e.g. ``"8.0 MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_statevector_fits(n_qubits: int, circuits: int = 1,
                           dtype: torch.dtype = torch.float32,
                           available: int | None = None) -> int:
    """Raise :class:`StatevectorTooLarge` unless simulation fits; return the peak estimate.

    Args:
        n_qubits: qubits per circuit.
        circuits: circuits simulated side by side.
        dtype: real dtype of the angles (float32 → complex64 states).
        available: bytes available (default: what the OS reports now).
    """
    need = PEAK_STATES * statevector_bytes(n_qubits, circuits, dtype)
    have = psutil.virtual_memory().available if available is None else available
    if need > have:
        raise StatevectorTooLarge(
            f"{circuits} circuit(s) of {n_qubits} qubits need about {human_bytes(need)} "
            f"({PEAK_STATES} states of {human_bytes(need / PEAK_STATES)}) but only {human_bytes(have)} "
            f"is available; use more chunks (smaller circuits) or a smaller network")
    return need

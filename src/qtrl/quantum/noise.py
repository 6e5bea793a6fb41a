"""Noise specifications (Qiskit Aer's model) and the readout error applied to probabilities.

``depolarizing:p`` puts a depolarizing channel of probability ``p`` after every
gate of the ``u3``/``cx`` basis (exact: :mod:`qtrl.quantum.density`; Aer:
:class:`~qtrl.quantum.aer.QiskitBackend`); ``readout:p`` flips every measured
bit with probability ``p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..errors import UserError

__all__ = ["NOISE_FORMS", "NoiseSpec", "apply_readout", "apply_readout_torch", "parse_noise"]


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise specification: depolarizing and readout error probabilities."""

    depolarizing: float = 0.0
    readout: float = 0.0

    def __bool__(self) -> bool:
        return self.depolarizing > 0 or self.readout > 0


NOISE_FORMS = ("depolarizing:P", "readout:P", "depolarizing:P,readout:Q")


def parse_noise(spec: str | None) -> NoiseSpec:
    """Parse ``"depolarizing:p"``, ``"readout:p"`` or both joined by ``","``.

    ``p`` is a probability in ``[0, 1]``: depolarizing error ``p`` after every
    one- and two-qubit gate (:data:`QiskitBackend.NOISE_BASIS
    <qtrl.quantum.aer.QiskitBackend.NOISE_BASIS>`); readout error ``p`` = each
    measured bit flipped with probability ``p``. ``None`` or ``""`` or ``"none"``
    is no noise.

    Raises:
        UserError (a ValueError): naming the bad spec and the accepted forms.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return NoiseSpec()

    def bad(reason: str) -> UserError:
        return UserError(f"bad noise spec {spec!r}: {reason}; accepted forms: "
                         f"{', '.join(NOISE_FORMS)} (P, Q probabilities in [0, 1], "
                         f"e.g. 'depolarizing:0.01,readout:0.02')")

    values: dict[str, float] = {}
    for part in spec.split(","):
        kind, sep, number = part.strip().partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise bad(f"{part.strip()!r} has no ':'")
        if kind not in ("depolarizing", "readout"):
            raise bad(f"unknown noise kind {kind!r}")
        if kind in values:
            raise bad(f"{kind!r} given twice")
        try:
            p = float(number)
        except ValueError:
            raise bad(f"{number.strip()!r} is not a number") from None
        if not 0.0 <= p <= 1.0:  # also rejects nan
            raise bad(f"{kind} probability {p} is outside [0, 1]")
        values[kind] = p
    return NoiseSpec(**values)


def apply_readout(probs: np.ndarray, p: float, n: int) -> np.ndarray:
    """Flip every bit independently with probability ``p``: ``(batch, 2**n)`` -> same."""
    confusion = np.array([[1 - p, p], [p, 1 - p]])
    x = probs.reshape(probs.shape[0], *([2] * n))
    for axis in range(1, n + 1):
        x = np.moveaxis(np.tensordot(x, confusion, axes=([axis], [1])), -1, axis)
    return x.reshape(probs.shape)


def apply_readout_torch(probs: Tensor, p: float, n: int) -> Tensor:
    """:func:`apply_readout` in torch (differentiable): every bit flipped with probability ``p``."""
    x = probs.reshape(probs.shape[0], *([2] * n))
    for axis in range(1, n + 1):
        x = (1 - p) * x + p * x.flip(axis)
    return x.reshape(probs.shape)

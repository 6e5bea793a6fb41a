"""What every backend (an agent's "QPU") shares: the :class:`Backend` protocol,
the checks of its arguments, shot sampling, and the error for a missing SDK."""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .template import CircuitTemplate

__all__ = ["Backend", "MissingExtraError", "check_angles", "check_shots", "require",
           "sample_probabilities"]


class MissingExtraError(ImportError, UserError):
    """An optional SDK (PennyLane, Qiskit) is not installed; the message names the extra."""


def require(module: str, extra: str, backend: str) -> Any:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install qtrl[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"the {backend!r} backend needs the Python package {module.split('.')[0]!r}, which "
            f"is not installed; install it with: pip install 'qtrl[{extra}]'") from err


@runtime_checkable
class Backend(Protocol):
    """Runs a batch of circuits: ``angles (batch, P)`` -> probabilities ``(batch, 2**n)``.

    ``shots=None`` means exact probabilities; otherwise each row is estimated
    from ``shots`` samples. ``differentiable`` says whether autograd can go
    through :meth:`probabilities` (only the torch backend without shots, noisy or not).
    """

    name: str
    shots: int | None

    @property
    def differentiable(self) -> bool: ...

    def probabilities(self, template: CircuitTemplate, angles: Tensor) -> Tensor:
        """Probabilities of each row's circuit, ``(batch, 2**n)``, dtype of ``angles``;
        wire 0 is the MSB of the index."""
        ...

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream from ``seed`` (training reseeds every update,
        so a resumed run samples exactly what an uninterrupted one does)."""
        ...


def check_angles(template: CircuitTemplate, angles: Tensor) -> None:
    """Raise ValueError unless ``angles`` are ``(batch, template.n_angles)``."""
    if angles.dim() != 2 or angles.shape[1] != template.n_angles:
        raise ValueError(f"angles must be (batch, {template.n_angles}), "
                         f"got {tuple(angles.shape)}")


def check_shots(shots: int | None) -> int | None:
    """``shots`` as an int (or None: exact); UserError unless a positive integer or None."""
    if shots is None:
        return None
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise UserError(f"shots must be a positive integer or None (exact), got {shots!r}")
    return int(shots)


def sample_probabilities(probs: Tensor, shots: int, rng: np.random.Generator) -> Tensor:
    """Empirical frequencies of ``shots`` samples from each row of ``probs`` ``(batch, d)``.

    NumPy's multinomial draws the counts by conditional binomials, a cost that
    does not grow with ``shots`` (``torch.multinomial``'s does).
    """
    p = probs.detach().double().clamp_min(0).cpu().numpy()
    p /= p.sum(1, keepdims=True)
    counts = rng.multinomial(shots, p)
    return torch.from_numpy(counts / shots).to(probs.dtype)

"""qtrl: Quantum-Train reinforcement learning, distributed (Dist-QTRL)."""

from .generator import ParameterCounts, QuantumTrain

__version__ = "0.1.0"

__all__ = ["ParameterCounts", "QuantumTrain", "__version__"]

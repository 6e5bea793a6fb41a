"""qtrl: Quantum-Train reinforcement learning, distributed (Dist-QTRL)."""

__version__ = "0.1.0"

"""qtrl: Quantum-Train reinforcement learning, distributed (Dist-QTRL)."""

import gc as _gc

# The imports below (torch, Numba) create a few hundred thousand long-lived objects
# and hardly any garbage; the cyclic collector's passes over them would take a
# noticeable share of the import, so it pauses until they are done.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from .generator import ParameterCounts, QuantumTrain
finally:
    if _collecting:
        _gc.enable()

__version__ = "0.1.0"

__all__ = ["ParameterCounts", "QuantumTrain", "__version__"]

"""What a run will hold in memory, and its parameter counts, from sizes alone.

Nothing here builds a network: ``qtrl info --hidden 1000000000`` answers at
once, and ``qtrl train`` refuses a run that cannot fit before it allocates or
writes anything. The estimate counts, per network (both for PPO and A2C),
what one update holds at its peak:

* the target network's own parameters (never trained, still allocated) and,
  for Quantum-Train, the ``(k, f)`` index features of its ``k`` weights;
* one generation kept for the backward pass: the mapping model's activations
  over all ``k`` rows (its input ``f + 1`` wide, every hidden layer before and
  after its activation, the output), the weights, their gradient and the
  backward pass's row buffers, and the roll-out actor's copy of the weights;
* the trainable parameters with their gradient and Adam's two moments;
* the statevector at its peak (forward states and the adjoint walked back,
  :data:`~qtrl.quantum.memory.PEAK_STATES` of them per circuit);
* the loss's forward and backward pass over an update's batch, and the
  roll-out buffers (REINFORCE: every step of the update's episodes at the
  episode cap; PPO/A2C: the roll-out, a minibatch with gradients);

plus :data:`RUNTIME_BYTES` for what does not scale with the network (compiled
kernels, environments, allocator slack). ``tests/test_memory_estimate.py``
checks the estimate against measured peaks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..generator import ParameterCounts, check_chunks, qubits_for
from ..quantum.memory import PEAK_STATES, human_bytes, statevector_bytes

__all__ = ["RUNTIME_BYTES", "MemoryEstimate", "check_memory_fits", "estimate_memory",
           "model_counts", "network_counts"]

FLOAT = 4        # bytes of a float32 parameter, weight or activation
RUNTIME_BYTES = 128 * 2**20
# Floats per generated weight besides the mapping's activations: the weight, its
# gradient, three backward row buffers, the actor's copy (counted twice: it may
# be float64), the target's own parameter.
_PER_WEIGHT = 8
_QNN_ANGLES = {"ring-u3": 6, "ry-cnot": 1}   # angles per qubit per layer


def _target_weights(obs_dim: int, hidden: Sequence[int], outputs: int) -> int:
    """Weights and biases of the MLP ``obs_dim → hidden… → outputs``."""
    sizes = [obs_dim, *hidden, outputs]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def network_counts(config: Any, obs_dim: int, hidden: Sequence[int], outputs: int,
                   classical: bool) -> dict[str, Any]:
    """The counts ``parameter_counts()`` of the built network would give (a
    Quantum-Train ``ParameterCounts.as_dict()``, or ``{target_weights, total}``
    for one trained directly). Refuses (UserError) chunks that do not split it."""
    k = _target_weights(obs_dim, hidden, outputs)
    if classical:
        return {"target_weights": k, "total": k}
    chunks = config.chunks
    check_chunks(chunks, k)
    qubits = qubits_for(math.ceil(k / chunks)) if chunks > 1 else qubits_for(k)
    chunk_bits = math.ceil(math.log2(chunks)) if chunks > 1 else 0
    qnn = _QNN_ANGLES[config.ansatz] * chunks * config.layers * qubits
    mapping = _target_weights(qubits + chunk_bits + 1, config.mapping_hidden, 1)
    return ParameterCounts(k, qubits, chunks, config.layers, qnn, mapping,
                           qnn + mapping).as_dict()


def model_counts(config: Any, obs_dim: int, n_actions: int,
                 continuous: bool = False) -> dict[str, Any]:
    """:func:`qtrl.rl.policy.counts_dict` of :func:`qtrl.rl.policy.build_model`'s
    model, computed from the sizes (nothing is built)."""
    policy = network_counts(config, obs_dim, config.hidden, n_actions, config.classical)
    if not config.actor_critic:
        return policy
    critic = network_counts(config, obs_dim, config.critic_hidden or config.hidden, 1,
                            config.classical or config.critic == "classical")
    head = n_actions if continuous else 0
    weights = policy["target_weights"] + critic["target_weights"] + head
    total = policy["total"] + critic["total"] + head
    return {"actor": policy, "critic": critic, "log_std": head, "target_weights": weights,
            "total": total, "compression": weights / total}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one agent's run holds at its peak, by part (see the module docstring)."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self, top: int = 3) -> str:
        """The largest parts, e.g. ``"mapping activations 1.2 GiB, ..."``."""
        largest = sorted(self.parts.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{name} {human_bytes(size)}" for name, size in largest)


def _network_bytes(counts: dict[str, Any], config: Any, parts: dict[str, int]) -> None:
    """Add one network's parts to ``parts``."""
    k, total = counts["target_weights"], counts["total"]
    parts["trainable + Adam"] = parts.get("trainable + Adam", 0) + 4 * total * FLOAT
    if "qubits" not in counts:              # trained directly: the actor's copy, a checkpoint's
        parts["weights"] = parts.get("weights", 0) + 3 * k * FLOAT
        return
    features = counts["qubits"] + math.ceil(math.log2(counts["chunks"]))
    hidden = sum(config.mapping_hidden)
    rows = features + (features + 1 + hidden) + (hidden + 1)   # features, h, z
    parts["mapping activations"] = parts.get("mapping activations", 0) + rows * k * FLOAT
    parts["weights"] = parts.get("weights", 0) + _PER_WEIGHT * k * FLOAT
    parts["statevector"] = parts.get("statevector", 0) + PEAK_STATES * statevector_bytes(
        counts["qubits"], counts["chunks"])


def _episode_cap(config: Any) -> int:
    """Steps an episode may last: ``--max-steps``, else the environment's limit."""
    if config.max_steps:
        return int(config.max_steps)
    try:
        import gymnasium as gym
        return int(gym.spec(config.env).max_episode_steps or 1000)
    except Exception:  # noqa: BLE001 - an id gymnasium cannot look up: a generous cap
        return 1000


def estimate_memory(config: Any, obs_dim: int, n_actions: int,
                    continuous: bool = False) -> MemoryEstimate:
    """What one agent of ``config`` holds at its peak (:class:`MemoryEstimate`)."""
    counts = model_counts(config, obs_dim, n_actions, continuous)
    parts: dict[str, int] = {"runtime": RUNTIME_BYTES}
    networks = [counts["actor"], counts["critic"]] if "actor" in counts else [counts]
    for net in networks:
        _network_bytes(net, config, parts)
    widths = obs_dim + sum(config.hidden) + n_actions
    if config.actor_critic:
        widths += obs_dim + sum(config.critic_hidden or config.hidden) + 1
        steps = config.rollout_steps * config.vector_envs
        grad_rows = math.ceil(steps / max(1, config.num_minibatches))
        batch = max(3 * grad_rows, steps)   # a minibatch with gradients; the whole, without
    else:
        steps = config.episodes_per_update * _episode_cap(config)
        batch = 3 * steps
    parts["loss activations"] = batch * widths * FLOAT
    parts["roll-out buffers"] = steps * (3 * obs_dim + n_actions + 8) * 8
    return MemoryEstimate(parts)


def check_memory_fits(config: Any, obs_dim: int, n_actions: int, continuous: bool = False,
                      processes: int = 1, available: int | None = None) -> MemoryEstimate:
    """Refuse (UserError, one line) a run whose estimate exceeds the memory available.

    ``processes``: agent processes this host starts (a local ``--agents N``
    run: ``N``, each also importing what this process holds); ``available``:
    bytes (default: what the OS reports now).
    """
    import psutil

    estimate = estimate_memory(config, obs_dim, n_actions, continuous)
    need = estimate.total
    if processes > 1:   # each agent is a fresh interpreter importing what this one holds
        need = processes * (need + psutil.Process().memory_info().rss)
    have = psutil.virtual_memory().available if available is None else available
    if need > have:
        agents = f" ({processes} agents)" if processes > 1 else ""
        raise UserError(f"this run needs about {human_bytes(need)} of memory{agents} "
                        f"({estimate.describe()}) but {human_bytes(have)} is available; "
                        f"use a smaller network (--hidden, --mapping-hidden) or fewer --agents")
    return estimate

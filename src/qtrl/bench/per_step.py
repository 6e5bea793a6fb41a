"""The reference notebook's per-step formulation of a Quantum-Train REINFORCE
update, reimplemented as the yardstick of ``qtrl bench training`` [2]: the
weights are regenerated with autograd at every environment step."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["CONTROLLER", "gate_by_gate", "per_step_formulation"]

CONTROLLER = np.array([0.1, 0.5, 1.0, 1.0], dtype=np.float32)  # push right if w·obs > 0


def _controller_actor(obs: np.ndarray) -> np.ndarray:
    """Logits of a fixed balancing controller (lasts CartPole's 500 steps)."""
    z = obs @ CONTROLLER
    return np.stack((-20 * z, 20 * z), 1)


def gate_by_gate(qt: Any) -> None:
    """Make ``qt``'s circuit run as the reference's does (TorchQuantum): one
    autograd op per gate on the state, every intermediate state kept for the
    backward pass, no fusion, no compiled kernel. Same angles, same probabilities."""
    import torch

    from ..quantum import gates
    from ..quantum.statevector import apply_matrix, probabilities, zero_state

    ring = qt.qnn
    n = ring.n_qubits

    def forward(circuits: slice = slice(None)) -> torch.Tensor:
        u = gates.u3_from_angles(ring.u3_angles[circuits])                  # (c, L, n, 2, 2)
        cu = gates.controlled(gates.u3_from_angles(ring.cu3_angles[circuits]))
        state = zero_state(n, u.shape[0], ring.complex_dtype)
        for layer in range(ring.layers):
            for q in range(n):
                state = apply_matrix(state, u[:, layer, q], (q,))
            for j in range(n):
                state = apply_matrix(state, cu[:, layer, j], (j, (j + 1) % n))
        return probabilities(state)

    ring.forward = forward
    ring.stage = lambda: None  # no fused compiled generation: the circuit runs as above


def per_step_formulation(seed: int, episodes: int, max_steps: int | None = None,
                         controller: bool = False, reference_simulator: bool = True
                         ) -> dict[str, float]:
    """The reference's update, reimplemented: at *every* environment step the
    weights are regenerated with autograd and the step's log-probability keeps
    its graph; one backward over the episode at its end; one episode per update.

    ``reference_simulator``: the circuit runs gate by gate under plain autograd,
    as the reference's TorchQuantum does (:func:`gate_by_gate`); otherwise by
    our simulator (compiled kernels), which isolates what batching alone buys."""
    import torch

    from ..algos.reinforce import normalise_returns
    from ..config import TrainConfig
    from ..loops.common import build
    from ..rl.env import make_env
    from ..rl.returns import discounted_returns

    config = TrainConfig.from_preset("cartpole-paper", seed=seed)
    algo = build(config, rank=0)
    qt, opt = algo.model, algo.optimizer
    if reference_simulator:
        gate_by_gate(qt)
    env = make_env(config.env, max_steps)
    rng = torch.Generator().manual_seed(seed)
    steps, t_total = 0, 0.0
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed * 1000 + ep)
            t0 = time.perf_counter()
            logps, rewards = [], []
            while True:
                weights = qt.generate()                       # every step, with autograd
                logits = qt(torch.from_numpy(obs).unsqueeze(0), weights=weights)
                logp = torch.log_softmax(logits, -1)[0]
                if controller:
                    action = int(_controller_actor(obs[None])[0].argmax())
                else:
                    action = int(torch.multinomial(logp.exp(), 1, generator=rng))
                logps.append(logp[action])
                obs, reward, terminated, truncated, _ = env.step(action)
                rewards.append(reward)
                if terminated or truncated:
                    break
            g = discounted_returns(np.asarray(rewards), np.array([len(rewards)]), config.gamma)
            returns = normalise_returns(torch.from_numpy(g).float())
            loss = -(torch.stack(logps) * returns).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            t_total += time.perf_counter() - t0
            steps += len(rewards)
    finally:
        env.close()
    return {"time": t_total, "steps": float(steps)}

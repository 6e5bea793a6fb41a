"""Every random stream of a run, named in one registry.

A stream is NumPy's ``SeedSequence(seed, spawn_key=(tag, *key))``: the run's
seed, the purpose's tag first, then the purpose's own key (agent, update,
env copy, ...). Tags are distinct by construction (an ``Enum`` of unique
values), and a spawn key that differs in its first entry gives a different
entropy pool, so two purposes can never draw from the same stream, whatever
their keys (``tests/test_seeds.py`` checks the registry).

Everything random inside update ``u`` of agent ``a`` is a pure function of
``(seed, a, u)``: a resumed run continues these streams exactly like an
uninterrupted one without storing them. The initial parameters come from
``torch.manual_seed(seed)`` (torch's own generator, not a stream here); the
checkpoint keeps the global torch, NumPy and Python generators' states too,
for anything else that draws from them.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Stream", "generator", "integer_seed", "seed_sequence"]


@enum.unique
class Stream(enum.IntEnum):
    """The purposes that draw random numbers, each with its own tag; the key each
    one is spawned with is given in brackets."""

    ACTIONS = 1
    """Action sampling of one update's roll-out (agent, update)."""
    ENV_RESETS = 2
    """One PCG64 stream per env copy, advanced to the update (agent, copy)."""
    SHOTS = 3
    """Shot sampling of an agent's (QPU's) circuits: (agent,) at build, (agent, update)."""
    SPSA_SHARED = 4
    """SPSA directions all agents of a sync update draw alike: () at build, (update,)."""
    SPSA_OWN = 5
    """An async worker's own SPSA directions (agent, update)."""
    EVAL_RESETS = 6
    """``qtrl eval`` and export checks: env copies' resets (0, copy)."""
    EVAL_ACTIONS = 7
    """``qtrl eval`` and export checks: action sampling ()."""
    MINIBATCHES = 8
    """PPO's shuffling of one update's roll-out into minibatches (agent, update)."""


def seed_sequence(seed: int, stream: Stream, *key: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` at ``key`` for a run seeded ``seed``."""
    return np.random.SeedSequence(seed, spawn_key=(int(stream), *key))


def generator(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """A NumPy ``Generator`` on :func:`seed_sequence`."""
    return np.random.default_rng(seed_sequence(seed, stream, *key))


def integer_seed(seed: int, stream: Stream, *key: int) -> int:
    """A 64-bit integer seed from :func:`seed_sequence` (for torch generators and
    simulators that take an integer)."""
    return int(seed_sequence(seed, stream, *key).generate_state(1, np.uint64)[0])
